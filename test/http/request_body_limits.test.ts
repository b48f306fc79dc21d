// Bodies read before anyone is authenticated (the console's bootstrap sign-in form, a credential
// registration whose bearer is not checked until the body is) must stop being read at their limit: a
// client streaming an endless chunked body must not make the broker buffer it.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import type { CredentialServices } from '../../src/credentials/build_credentials.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { testDeps, TEST_NOW } from '../support/broker_deps.ts'

const ORIGIN = 'https://broker.example.org'
const CHUNK = 64 * 1024
const TOTAL = 64 * 1024 * 1024

/** A chunked body of 64 MiB, counting what the server pulled of it. */
function endless(): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  let pulled = 0
  const chunk = new Uint8Array(CHUNK).fill(0x61)
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= TOTAL) return controller.close()
      pulled += CHUNK
      controller.enqueue(chunk)
    },
  })
  return { body, pulled: () => pulled }
}

/** An object whose every property but those of `kept` throws when read: a dependency the test must not reach. */
function unusedBut(kept: Record<string, unknown>): object {
  return new Proxy(kept, { get: (target, key) => { if (key in target) return target[key as string]; throw new Error('must not be reached') } })
}

function app() {
  const store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(), sites: new Set() }),
  })
  const unused = unusedBut({})
  return createApp(testDeps({
    admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update('b'.repeat(43)).digest())] },
    console: { keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
    // Registration hands its reader to the service, which reads once the address limit is checked: this one
    // reads at once, and goes no further.
    // The credd's clock is read when the routes are built; nothing else of it may be.
    credentials: { service: { register: async (read: () => Promise<unknown>) => { await read(); throw new Error('must not be reached') } }, jobTokens: unused, credd: unusedBut({ clock: fixedClock(TEST_NOW) }) } as unknown as CredentialServices,
    certificates: { service: unused as never, verifyCaller: async () => ({ iss: 'https://iam.example.org/', sub: 'op', groups: [], scopes: [], exp: TEST_NOW + 60, claims: {} }) },
  }))
}

describe('request bodies read before authentication', () => {
  it.each([
    ['/v1/credentials', 'Bearer anything'],
    ['/v1/certificates', 'Bearer operator'],
  ])('POST %s stops reading a chunked body at its limit and answers invalid_request', async (path, authorization) => {
    const { body, pulled } = endless()
    const res = await app().request(path, {
      method: 'POST', body, duplex: 'half', headers: { authorization, 'content-type': 'application/json' },
    } as RequestInit)
    expect(res.status).toBe(400)
    expect((await res.json() as { error: string }).error).toBe('invalid_request')
    expect(pulled()).toBeLessThan(1024 * 1024)
  })

  it('POST /console/sign-in/token stops reading a chunked body at its limit', async () => {
    const { body, pulled } = endless()
    const res = await app().request('/console/sign-in/token', {
      method: 'POST', body, duplex: 'half', headers: { origin: ORIGIN, 'content-type': 'application/x-www-form-urlencoded' },
    } as RequestInit)
    expect(res.status).toBe(413)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(pulled()).toBeLessThan(1024 * 1024)
  })
})

// Admin routes read their bodies only after the admin is authenticated, but an admin client (a script
// with a bug, a stolen bootstrap token) streaming without end must not make the broker buffer it either.
describe('admin request bodies', () => {
  const ADMIN = `Bearer ${'b'.repeat(43)}`

  function adminApp() {
    const store = new MemoryStore()
    const revocations = new RevocationService({
      store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
      knownLabels: () => ({ roles: new Set(), sites: new Set() }),
    })
    const policy = { get current(): never { throw new Error('must not be reached') } }
    return createApp(testDeps({
      admin: { audit: store, revocations, policy, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update('b'.repeat(43)).digest())] },
    }))
  }

  it.each([
    ['POST', '/v1/revocations'],
    ['DELETE', '/v1/revocations/1'],
    ['POST', '/admin/policy/explain'],
  ])('%s %s stops reading a chunked body at its limit and answers invalid_request', async (method, path) => {
    const { body, pulled } = endless()
    const res = await adminApp().request(path, {
      method, body, duplex: 'half', headers: { authorization: ADMIN, 'content-type': 'application/json' },
    } as RequestInit)
    expect(res.status).toBe(400)
    expect((await res.json() as { error: string }).error).toBe('invalid_request')
    expect(pulled()).toBeLessThan(1024 * 1024)
  })

  it.each([
    ['POST', '/v1/revocations'],
    ['DELETE', '/v1/revocations/1'],
    ['POST', '/admin/policy/explain'],
  ])('%s %s refuses a declared Content-Length past its limit before reading', async (method, path) => {
    const text = JSON.stringify({ reason: 'x'.repeat(2 * 1024 * 1024) })
    const res = await adminApp().request(path, {
      method, body: text, headers: { authorization: ADMIN, 'content-type': 'application/json', 'content-length': String(text.length) },
    })
    expect(res.status).toBe(400)
    expect((await res.json() as { error: string; error_description: string }).error_description).toMatch(/larger than \d+ bytes/)
  })
})
