import { setImmediate as nextTurn } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { batchedDestination } from '../../src/lib/batched_destination.ts'

function sink() {
  const chunks: string[] = []
  let syncFlushes = 0
  return { chunks, syncFlushes: () => syncFlushes, write: (c: string) => { chunks.push(c) }, flushSync: () => { syncFlushes++ } }
}

describe('batchedDestination', () => {
  it('hands the lines of one event-loop turn to the sink as one chunk, in order', async () => {
    const s = sink()
    const d = batchedDestination(s)
    d.write('a\n'); d.write('b\n'); d.write('c\n')
    expect(s.chunks).toEqual([])
    await nextTurn()
    expect(s.chunks).toEqual(['a\nb\nc\n'])
    d.write('d\n')
    await nextTurn()
    expect(s.chunks).toEqual(['a\nb\nc\n', 'd\n'])
  })

  it('writes nothing for a turn without lines', async () => {
    const s = sink()
    batchedDestination(s)
    await nextTurn()
    expect(s.chunks).toEqual([])
  })

  it('flush(true) writes the waiting lines at once and waits for the sink (the exit path)', async () => {
    const s = sink()
    const d = batchedDestination(s)
    d.write('last words\n')
    d.flush(true)
    expect(s.chunks).toEqual(['last words\n'])
    expect(s.syncFlushes()).toBe(1)
    await nextTurn()
    expect(s.chunks).toEqual(['last words\n'])
  })
})

describe('the stderr logger', () => {
  it('still writes the lines logged right before process.exit', async () => {
    const { spawnSync } = await import('node:child_process')
    const logger = new URL('../../src/lib/logger.ts', import.meta.url).href
    const script = `import { createLogger } from ${JSON.stringify(logger)}; const log = createLogger(); log.info('one'); log.error('two', { n: 2 }); process.exit(3)`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 })
    expect(r.status).toBe(3)
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; level: string })
    expect(lines.map((l) => [l.level, l.msg])).toEqual([['info', 'one'], ['error', 'two']])
  })
})

describe('the CLI\'s own stderr lines', () => {
  it('come after the log lines logged before them, not ahead of the batch', async () => {
    const { spawnSync } = await import('node:child_process')
    const logger = new URL('../../src/lib/logger.ts', import.meta.url).href
    const cli = new URL('../../src/cli/main.ts', import.meta.url).href
    // A command that fails (here: an unknown one) right after something logged its cause, in the same turn.
    const script = `import { createLogger } from ${JSON.stringify(logger)}; import { main } from ${JSON.stringify(cli)};
      createLogger().error('the cause'); process.argv = [process.argv[0], 'condor-token-broker', 'no-such-command']; await main()`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 })
    expect(r.status).toBe(2)
    const lines = r.stderr.trim().split('\n')
    expect(lines).toHaveLength(2)
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'error', msg: 'the cause' })
    expect(lines[1]).toMatch(/^condor-token-broker: unknown command "no-such-command"/)
  })
})

describe('the stderr logger with a busy thread pool', () => {
  it('keeps its lines in order with the CLI\'s own line and loses none at exit', async () => {
    const { spawnSync } = await import('node:child_process')
    const logger = new URL('../../src/lib/logger.ts', import.meta.url).href
    const lines = new URL('../../src/lib/stderr_lines.ts', import.meta.url).href
    // Four long pbkdf2 jobs hold every libuv pool thread: a write handed to the pool would wait behind
    // them while the CLI's line went out at once, and exit would come before it was written.
    const script = `import { pbkdf2 } from 'node:crypto'; import { createLogger } from ${JSON.stringify(logger)}; import { flushStderrLog } from ${JSON.stringify(lines)};
      for (let i = 0; i < 4; i++) pbkdf2('x', 'y', 3_000_000, 32, 'sha256', () => {})
      createLogger().error('the cause'); flushStderrLog(); process.stderr.write('condor-token-broker: failed\\n'); process.exit(1)`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 })
    expect(r.status).toBe(1)
    const out = r.stderr.trim().split('\n')
    expect(out).toHaveLength(2)
    expect(JSON.parse(out[0]!)).toMatchObject({ level: 'error', msg: 'the cause' })
    expect(out[1]).toBe('condor-token-broker: failed')
  })
})

describe('an uncaught exception', () => {
  it('is reported after the log lines logged before it', async () => {
    const { spawnSync } = await import('node:child_process')
    const logger = new URL('../../src/lib/logger.ts', import.meta.url).href
    const script = `import { createLogger } from ${JSON.stringify(logger)}; const log = createLogger();
      setTimeout(() => { log.warn('about to fail'); throw new Error('a bug') }, 1)`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 })
    expect(r.status).toBe(1)
    const first = r.stderr.split('\n')[0]!
    expect(JSON.parse(first)).toMatchObject({ level: 'warn', msg: 'about to fail' })
    expect(r.stderr).toContain('Error: a bug')
  })
})
