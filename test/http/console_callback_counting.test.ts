// Which console sign-in callbacks count against the client's address (docs/rate-limits.md): a code IAM
// refuses does (a made-up callback is one token request at IAM), IAM's own failure does not.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import * as oidc from 'openid-client'
import { afterEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { oidcSignIn } from '../../src/console/oidc_sign_in.ts'
import { createIamFetch } from '../../src/iam/iam_fetch.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { testDeps } from '../support/broker_deps.ts'
import { cookieOf, signInWithToken } from '../support/console_sign_in.ts'

const servers: Server[] = []
afterEach(async () => { for (const s of servers.splice(0)) await new Promise((r) => s.close(r)) })

/** A loopback IAM whose token endpoint answers every request with this status and body. */
async function tokenEndpointAnswering(status: number, type: string, body: string): Promise<string> {
  const s = createServer((_q, res) => { res.writeHead(status, { 'content-type': type }); res.end(body) })
  servers.push(s)
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}/`
}

/** One sign-in through the console against that IAM, and the addresses its refusals were counted for. */
async function callbackAgainst(iam: string): Promise<{ status: number; counted: number }> {
  const config = new oidc.Configuration({ issuer: iam, authorization_endpoint: `${iam}authorize`, token_endpoint: `${iam}token`, jwks_uri: `${iam}jwks` }, 'broker', 'secret')
  oidc.allowInsecureRequests(config)
  // The broker's own IAM client (npm undici), as discovery gives it: its Response is not the global one.
  config[oidc.customFetch] = createIamFetch({ timeoutSeconds: 5 }) as never
  const store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: { now: () => Math.floor(Date.now() / 1000) } as never, log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(), sites: new Set() }), knownIssuers: () => new Set([iam]),
  })
  let counted = 0
  const limits = { blockedAddress: () => undefined, noteRefused: () => { counted++ } }
  const signIn = oidcSignIn({ configuration: async () => config }, iam, 'https://broker.example.org/console/callback', () => Math.floor(Date.now() / 1000))
  const app = createApp(testDeps({
    admin: { audit: store, revocations, authenticators: [], limits },
    console: { signIn, keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
  }))
  const start = await app.request('/console/login', { redirect: 'manual' })
  const state = new URL(start.headers.get('location')!).searchParams.get('state')!
  const res = await app.request(`/console/callback?code=a-code&state=${state}`, { headers: { cookie: `__Host-ctb-console-login=${cookieOf(start, '__Host-ctb-console-login')}` } })
  return { status: res.status, counted }
}

describe('console sign-in callbacks and the address limit', () => {
  it('counts a code IAM refuses (400 invalid_grant, RFC 6749 §5.2)', async () => {
    const r = await callbackAgainst(await tokenEndpointAnswering(400, 'application/json', '{"error":"invalid_grant"}'))
    expect(r).toEqual({ status: 400, counted: 1 })
  })

  // An IAM having a bad day (its proxy's 502 page, a 500 or a 503 temporarily_unavailable) is not the
  // browser's doing: counted, every admin signing in meanwhile used up their address's allowance.
  it.each([
    [502, 'text/html', '<html><body>Bad Gateway</body></html>'],
    [500, 'application/json', '{"error":"server_error"}'],
    [503, 'application/json', '{"error":"temporarily_unavailable"}'],
  ])('does not count IAM answering %i', async (status, type, body) => {
    const r = await callbackAgainst(await tokenEndpointAnswering(status, type, body))
    expect(r.counted).toBe(0)
  })
})

/**
 * The console's token form admits the bearer as the admin API does, so a blocked address is refused there
 * too. The console is pages: the refusal is one, with Retry-After, as the IAM callback's is, not the admin
 * API's JSON in the browser.
 */
describe('the console token form from a blocked address', () => {
  it('answers a 429 page with Retry-After', async () => {
    const store = new MemoryStore()
    const revocations = new RevocationService({
      store, clock: { now: () => Math.floor(Date.now() / 1000) } as never, log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
      knownLabels: () => ({ roles: new Set(), sites: new Set() }), knownIssuers: () => new Set(),
    })
    const blocked = { limit: 'address' as const, retryAfter: 37, record: false, description: 'too many refused requests from this address; retry after 37 s' }
    const limits = { blockedAddress: () => blocked, noteRefused: () => {} }
    const iamLike = { authenticate: async () => null }
    const app = createApp(testDeps({
      admin: { audit: store, revocations, authenticators: [iamLike], limits },
      console: { keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
    }))
    const res = await signInWithToken(app, 'an-iam-access-token', 'https://broker.example.org')
    expect(res.status).toBe(429)
    expect(res.headers.get('retry-after')).toBe('37')
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
  })
})
