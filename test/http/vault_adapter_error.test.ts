/**
 * What the Vault-compatible listener answers when hono's adapter fails a request itself: Vault's error shape,
 * `{"errors": [...]}`, which HTCondor's Vault credmon reads, and never "permission denied", on which it
 * deletes the user's .top. The adapter's own answers are an empty 400 and an empty 500.
 */
import { RequestError } from '@hono/node-server'
import { describe, expect, it } from 'vitest'
import { vaultAdapterErrorAnswer } from '../../src/http/adapter_error.ts'
import type { Logger } from '../../src/lib/logger.ts'

function recordingLogger(onError: () => void = () => undefined): { log: Logger; errors: string[] } {
  const errors: string[] = []
  const log = { error: (msg: string) => { errors.push(msg); onError() }, warn: () => undefined, info: () => undefined, debug: () => undefined } as unknown as Logger
  return { log, errors }
}

describe('vaultAdapterErrorAnswer', () => {
  it('a request the adapter cannot make a URL of: 400 in Vault\'s shape, not logged as a fault', async () => {
    const { log, errors } = recordingLogger()
    const res = vaultAdapterErrorAnswer(log)(new RequestError('Invalid host header'))
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toBe('application/json')
    const body = await res.json() as { errors: string[] }
    expect(body.errors).toHaveLength(1)
    expect(body.errors[0]).not.toContain('permission denied')
    expect(errors).toEqual([])
  })

  it('a failure of the app: logged, and 500 {"errors": ["internal error"]}', async () => {
    const { log, errors } = recordingLogger()
    const res = vaultAdapterErrorAnswer(log)(new Error('boom'))
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ errors: ['internal error'] })
    expect(errors).toHaveLength(1)
  })

  it('a logger that throws still gets the 500 in Vault\'s shape', async () => {
    const { log } = recordingLogger(() => { throw new Error('log down') })
    const res = vaultAdapterErrorAnswer(log)(new Error('boom'))
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ errors: ['internal error'] })
  })
})
