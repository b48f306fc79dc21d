import { beforeEach, describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * Registration bounds (docs/job-credentials.md, docs/rate-limits.md): a user holds at most
 * `credentials.max_per_user` live credentials (each handle is one: a row, and a refresh token the broker
 * keeps fresh at IAM), and registration is rate limited per caller under `rate_limits.registration`.
 * Refusals are OAuth error JSON; a limit refusal is 429 `slow_down` with Retry-After (RFC 8628 §3.5's
 * code, RFC 9110 §10.2.3's header). Here the bound is 3, the limit 4 an hour, and an address is blocked
 * after 2 refused unauthenticated requests, set in the config.
 */
const t = await useCredentialsApp({
  configEdit: (yaml) => yaml.replace('  minimum_seconds: 300\n', '  minimum_seconds: 300\n  max_per_user: 3\n')
    + 'rate_limits:\n  registration: { requests: 4, per: 1h }\n  address: { requests: 2, per: 1h }\n',
})

beforeEach(() => {
  t.iam.tokenRequests = []
})

const exchanges = () => t.iamRequests('urn:ietf:params:oauth:grant-type:token-exchange').length

describe('credentials.max_per_user', () => {
  it('refuses a user a credential beyond the bound with access_denied, before IAM is asked; replacing or revoking frees it', async () => {
    // Each registration by a new IAM subject, so the rate limit is not what refuses.
    const as = async (sub: string) => t.userToken({ preferred_username: 'mia', sub })
    for (const handle of ['a', 'b', 'c']) expect((await t.register(await as(`mia-${handle}`), { provider: 'cms', handle })).status).toBe(201)
    const before = exchanges()
    const refused = await t.register(await as('mia-d'), { provider: 'cms', handle: 'd' })
    expect(refused.status).toBe(403)
    expect(refused.headers.get('cache-control')).toBe('no-store')
    expect(await refused.json()).toEqual({ error: 'access_denied', error_description: expect.stringMatching(/already holds 3 job credentials.*at most 3/) })
    expect(exchanges()).toBe(before)
    expect(await t.store.readCredential('mia', 'cms_d')).toBeUndefined()
    const denied = (await t.store.query({ limit: 5, type: 'token.denied' })).records.map((r) => r.event)
    expect(denied[0]).toMatchObject({ role: 'job-iam', decision: 'deny', reason: expect.stringMatching(/^access_denied: .*at most 3/) })
    // Registering one of the three again replaces it: no new credential.
    expect((await t.register(await as('mia-a2'), { provider: 'cms', handle: 'a' })).status).toBe(201)
    // Another user is not counted with mia.
    expect((await t.register(await t.userToken({ preferred_username: 'noah' }), { provider: 'cms', handle: 'd' })).status).toBe(201)
    // A revoked credential no longer counts.
    const del = await t.app.request('/v1/credentials/mia/cms_b', { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })
    expect(del.status).toBe(200)
    expect((await t.register(await as('mia-d2'), { provider: 'cms', handle: 'd' })).status).toBe(201)
  })
})

describe('rate_limits.registration', () => {
  it('refuses a caller its fifth registration within the hour with 429 slow_down and Retry-After, before IAM is asked', async () => {
    const token = await t.userToken({ preferred_username: 'owen', sub: 'owen-sub' })
    for (let i = 0; i < 4; i++) expect((await t.register(token, { provider: 'cms' })).status).toBe(201)
    const before = exchanges()
    const refused = await t.register(token, { provider: 'cms' })
    expect(refused.status).toBe(429)
    const retryAfter = Number(refused.headers.get('retry-after'))
    expect(Number.isInteger(retryAfter)).toBe(true)
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(retryAfter).toBeLessThanOrEqual(3600)
    expect(await refused.json()).toEqual({ error: 'slow_down', error_description: expect.stringMatching(/registrations .*at most 4 per 3600 s/) })
    expect(exchanges()).toBe(before)
    const denied = (await t.store.query({ limit: 5, type: 'token.denied' })).records.map((r) => r.event)
    expect(denied[0]).toMatchObject({ decision: 'deny', reason: expect.stringMatching(/^slow_down: /), caller: { sub: 'owen-sub' } })
    // Another caller has its own allowance.
    expect((await t.register(await t.userToken({ preferred_username: 'owen', sub: 'owen-other' }), { provider: 'cms' })).status).toBe(201)
  })
})

describe('rate_limits.address', () => {
  it('blocks an address whose registrations with unverifiable tokens were refused, as at POST /token', async () => {
    // app.request has no socket: the peer address comes in as the node server's binding would give it.
    const from = (address: string, token: string) => t.app.request('/v1/credentials', {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ provider: 'cms' }),
    }, { incoming: { socket: { remoteAddress: address } } })
    for (let i = 0; i < 2; i++) expect((await from('192.0.2.7', 'not-a-token')).status).toBe(401)
    const good = await t.userToken({ preferred_username: 'pia' })
    const blocked = await from('192.0.2.7', good)
    expect(blocked.status).toBe(429)
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect((await blocked.json() as { error: string }).error).toBe('slow_down')
    expect((await from('192.0.2.8', good)).status).toBe(201)
  })

  // As POST /token and POST /v1/certificates: the blocked address is answered before anything of the
  // request is looked at, and a refusal before the token verifies (no bearer, unreadable body) is one of
  // the address's refused unauthenticated requests.
  const send = (address: string, init: { authorization?: string; contentType?: string; body?: string }) => t.app.request('/v1/credentials', {
    method: 'POST',
    headers: { ...(init.authorization !== undefined ? { authorization: init.authorization } : {}), ...(init.contentType !== undefined ? { 'content-type': init.contentType } : {}) },
    body: init.body ?? JSON.stringify({ provider: 'cms' }),
  }, { incoming: { socket: { remoteAddress: address } } })

  it('counts a registration without a bearer against its address, and then refuses that address 429', async () => {
    for (let i = 0; i < 2; i++) expect((await send('192.0.2.20', { contentType: 'application/json' })).status).toBe(401)
    const blocked = await send('192.0.2.20', { authorization: `Bearer ${await t.userToken({ preferred_username: 'quin' })}`, contentType: 'application/json' })
    expect(blocked.status).toBe(429)
    expect((await blocked.json() as { error: string }).error).toBe('slow_down')
  })

  it('counts a registration with an unreadable body against its address', async () => {
    const good = `Bearer ${await t.userToken({ preferred_username: 'rita' })}`
    expect((await send('192.0.2.21', { authorization: good, contentType: 'text/plain' })).status).toBe(400)
    expect((await send('192.0.2.21', { authorization: good, contentType: 'application/json', body: '{' })).status).toBe(400)
    expect((await send('192.0.2.21', { authorization: good, contentType: 'application/json' })).status).toBe(429)
  })

  // A body above the route's 16 KiB, declared by Content-Length as any HTTP/1.1 client with a buffered body
  // declares it: refused unread, and as much one of the address's refusals as a body that is not JSON.
  const oversized = (address: string) => t.app.request('/v1/credentials', {
    method: 'POST',
    headers: { authorization: 'Bearer x', 'content-type': 'application/json', 'content-length': String(20_000) },
    body: 'x'.repeat(20_000),
  }, { incoming: { socket: { remoteAddress: address } } })

  it('counts a registration with an oversized body against its address', async () => {
    for (let i = 0; i < 2; i++) expect((await oversized('192.0.2.23')).status).toBe(400)
    const good = `Bearer ${await t.userToken({ preferred_username: 'sven' })}`
    expect((await send('192.0.2.23', { authorization: good, contentType: 'application/json' })).status).toBe(429)
  })

  it('answers a blocked address 429 for an oversized body too', async () => {
    for (let i = 0; i < 2; i++) expect((await send('192.0.2.24', { authorization: 'Bearer not-a-token', contentType: 'application/json' })).status).toBe(401)
    expect((await oversized('192.0.2.24')).status).toBe(429)
  })

  it('answers a blocked address 429 whatever is wrong with its request', async () => {
    for (let i = 0; i < 2; i++) expect((await send('192.0.2.22', { authorization: 'Bearer not-a-token', contentType: 'application/json' })).status).toBe(401)
    for (const init of [{}, { authorization: 'Basic eA==', contentType: 'application/json' }, { authorization: 'Bearer x', contentType: 'text/plain' }, { authorization: 'Bearer x', contentType: 'application/json', body: '{' }]) {
      const res = await send('192.0.2.22', init)
      expect(res.status).toBe(429)
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    }
  })
})
