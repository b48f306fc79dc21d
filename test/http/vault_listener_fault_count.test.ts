/**
 * Every answer of the Vault-compatible listener without a token is counted in ctb_vault_refusals_total, a
 * 500 as `server_error` (docs/metrics.md), once, whichever layer gives the answer: the app's onError, or
 * hono's adapter when the app's own error handling fails (a non-Error thrown, which hono hands to no
 * onError; a logger that throws while a fault is reported).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { createVaultApp } from '../../src/http/vault_app.ts'
import { silentLogger, type Logger } from '../../src/lib/logger.ts'
import type { VaultRefusal } from '../../src/metrics/broker_metrics.ts'
import { vaultRequestListener } from '../../src/server.ts'

const throwingLogger = { ...silentLogger, error: () => { throw new Error('log down') }, warn: () => { throw new Error('log down') } } as unknown as Logger

let server: Server | undefined
afterEach(async () => {
  server?.closeAllConnections()
  await new Promise((r) => server ? server.close(r) : r(undefined))
  server = undefined
})

/** One Vault read through the whole listener; the status, body and the reasons counted. */
async function read(credentialByVaultToken: () => Promise<never>, log: Logger): Promise<{ status: number; body: unknown; counted: VaultRefusal[] }> {
  const counted: VaultRefusal[] = []
  const metrics = { vaultRefused: (reason: VaultRefusal) => { counted.push(reason) } }
  const app = createVaultApp({ store: { credentialByVaultToken }, jobTokens: {} as never, log, metrics })
  server = createServer(vaultRequestListener(app, 20, log, { metrics }))
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
  const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/secret/oauth/creds/alice/cms`, { headers: { 'X-Vault-Token': 'hvs.x' } })
  return { status: res.status, body: await res.json(), counted }
}

describe('the Vault-compatible listener counts each 500 as server_error, once', () => {
  it('a fault thrown as no Error (hono calls no onError for it)', async () => {
    const got = await read(() => Promise.reject('not an Error' as never), silentLogger)
    expect(got.status).toBe(500)
    expect(got.body).toEqual({ errors: ['internal error'] })
    expect(got.counted).toEqual(['server_error'])
  })

  it('a fault reported by a logger that throws', async () => {
    const got = await read(() => Promise.reject(new Error('boom')), throwingLogger)
    expect(got.status).toBe(500)
    expect(got.counted).toEqual(['server_error'])
  })

  it('a store outage whose log line throws: answered 500, so counted as one, not as an outage', async () => {
    const got = await read(() => Promise.reject(new AuditStoreUnavailable(new Error('database is locked'), 'read')), throwingLogger)
    expect(got.status).toBe(500)
    expect(got.counted).toEqual(['server_error'])
  })

  it('a store outage logged: 503, counted as store_unavailable (the count follows the answer)', async () => {
    const got = await read(() => Promise.reject(new AuditStoreUnavailable(new Error('database is locked'), 'read')), silentLogger)
    expect(got.status).toBe(503)
    expect(got.counted).toEqual(['store_unavailable'])
  })
})
