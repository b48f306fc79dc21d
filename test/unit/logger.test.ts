import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/lib/logger.ts'

function capture(level?: 'error' | 'warn' | 'info') {
  const lines: string[] = []
  const log = createLogger((l) => { lines.push(l) }, level ? { level } : {})
  return { log, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) }
}

describe('logger', () => {
  it('writes one JSON line: ISO time, level name, msg, then the fields', () => {
    const { log, lines, records } = capture()
    log.info('hello', { a: 1 })
    expect(lines).toHaveLength(1)
    expect(lines[0]!.endsWith('\n')).toBe(true)
    expect(lines[0]!.slice(0, -1)).not.toContain('\n')
    expect(records()[0]).toMatchObject({ level: 'info', msg: 'hello', a: 1 })
    expect(new Date(records()[0]!.time as string).toISOString()).toBe(records()[0]!.time)
  })

  it('redacts fields named like a credential', () => {
    const { log, lines } = capture()
    const secret = 'eyJhbGciOiJFUzI1NiJ9.payload-of-a-real-token.signature-0123456789'
    log.warn('oops', { subject_token: secret, refresh_token: secret, client_secret: secret, authorization: `Bearer ${secret}`, headers: { authorization: secret } })
    expect(lines.join('')).not.toContain('signature-0123456789')
    expect(lines.join('')).toContain('[redacted]')
  })

  it('keeps an error to one line with no stack below error level, and the stack at error', () => {
    const { log, records } = capture()
    const err = Object.assign(new Error('first line\nsecond line'), { code: 'ECONNRESET' })
    log.warn('iam down', { err })
    log.error('bug', { err })
    const [warn, error] = records() as [{ err: Record<string, unknown> }, { err: Record<string, unknown> }]
    expect(warn.err).toEqual({ name: 'Error', message: 'first line', code: 'ECONNRESET' })
    expect(error.err.stack).toEqual(err.stack)
  })

  it('writes nothing below its level', () => {
    const { log, records } = capture('warn')
    log.info('chatty')
    log.warn('worth saying')
    expect(records().map((r) => r.msg)).toEqual(['worth saying'])
  })
})
