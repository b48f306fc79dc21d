import { SignJWT } from 'jose'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BrokerError, InvalidRequest, TemporarilyUnavailable } from '../../src/errors.ts'
import { createIamAdapter, type IamAdapter } from '../../src/iam/create_iam_adapter.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { b64json, iamConfigFor, mswFetch, secretReader, TestIam, useMswIam } from '../support/iam.ts'

const iam = await TestIam.create({ issuer: 'https://iam.test.example/' })
const ecIam = await TestIam.create({ issuer: 'https://ec-iam.test.example/realm', alg: 'ES256' })
const server = useMswIam(iam, ecIam)

let adapters: IamAdapter[] = []
async function adapter(overrides: Record<string, unknown> = {}, issuerOverrides: Record<string, unknown> = {}, iams: TestIam[] = [iam, ecIam]): Promise<IamAdapter> {
  const a = await createIamAdapter(iamConfigFor(iams, overrides, issuerOverrides), { log: silentLogger, fetch: mswFetch, readFile: secretReader(...iams) })
  adapters.push(a)
  return a
}

/** The BrokerError a verification fails with; also asserts the token never appears in its description. */
async function failure(a: IamAdapter, token: string): Promise<BrokerError> {
  const err = await a.verifier.verify(token).then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(BrokerError)
  const be = err as BrokerError
  if (token.length > 20) expect(be.description).not.toContain(token.slice(-20))
  return be
}

beforeEach(() => {
  for (const i of [iam, ecIam]) {
    i.counts = { discovery: 0, jwks: 0, token: 0, introspection: 0, revocation: 0 }
    i.faults = { discovery: 'ok', jwks: 'ok', token: 'ok', introspection: 'ok' }
  }
})
afterEach(() => {
  for (const a of adapters) a.close()
  adapters = []
})

describe('IamSubjectTokenVerifier: valid tokens', () => {
  it('verifies an RS256 WLCG-profile token and exposes the policy view', async () => {
    const a = await adapter()
    const token = await iam.mint({ sub: 'a1b2', scope: 'compute.read compute.read storage.read:/cms', preferred_username: 'alice' })
    const s = await a.verifier.verify(token)
    expect(s).toMatchObject({ iss: 'https://iam.test.example/', sub: 'a1b2', client_id: 'user-facing-client', groups: ['/cms', '/cms/pilots'], scopes: ['compute.read', 'storage.read:/cms'], preferred_username: 'alice' })
    expect(typeof s.jti).toBe('string')
    expect(Object.isFrozen(s) && Object.isFrozen(s.groups) && Object.isFrozen(s.claims)).toBe(true)
  })

  it('verifies an ES256 token from a path-based issuer (no trailing slash) with several trusted issuers', async () => {
    const a = await adapter()
    const s = await a.verifier.verify(await ecIam.mint())
    expect(s.iss).toBe('https://ec-iam.test.example/realm')
  })

  it('accepts IAM-profile groups when the profile is iam', async () => {
    const a = await adapter({}, { profile: 'iam' })
    const s = await a.verifier.verify(await iam.mint({ groups: ['/atlas'], 'wlcg.groups': undefined }, { omit: ['wlcg.ver', 'wlcg.groups'] }))
    expect(s.groups).toEqual(['/atlas'])
  })

  it('accepts a newer WLCG minor version and a token within the clock skew after exp', async () => {
    const a = await adapter()
    const now = Math.floor(Date.now() / 1000)
    await expect(a.verifier.verify(await iam.mint({ 'wlcg.ver': '1.3' }))).resolves.toBeTruthy()
    await expect(a.verifier.verify(await iam.mint({ iat: now - 3600, nbf: now - 3600, exp: now - 30 }))).resolves.toBeTruthy()
  })

  it('checks the expected audience when configured', async () => {
    const a = await adapter({}, { audience: ['https://broker.example.org', 'https://broker2.example.org'] })
    await expect(a.verifier.verify(await iam.mint({ aud: ['https://broker.example.org', 'x'] }))).resolves.toBeTruthy()
  })
})

describe('IamSubjectTokenVerifier: bad tokens are invalid_request and never echo the token', () => {
  it('rejects alg none without contacting IAM', async () => {
    const a = await adapter()
    const now = Math.floor(Date.now() / 1000)
    const token = `${b64json({ alg: 'none', typ: 'JWT' })}.${b64json({ iss: iam.issuer, sub: 'x', jti: 'j', iat: now, exp: now + 600, 'wlcg.ver': '1.0' })}.`
    const e = await failure(a, token)
    expect(e).toBeInstanceOf(InvalidRequest)
    expect(e.description).toMatch(/signed with one of RS256, ES256/)
    expect(iam.counts.jwks + iam.counts.discovery).toBe(0)
  })

  it('rejects HS256 signed with the IAM public key as the HMAC secret', async () => {
    const a = await adapter()
    const now = Math.floor(Date.now() / 1000)
    const secret = new TextEncoder().encode(await iam.publicKeyPem())
    const token = await new SignJWT({ iss: iam.issuer, sub: 'mallory', jti: 'j', 'wlcg.ver': '1.0', iat: now, exp: now + 600 })
      .setProtectedHeader({ alg: 'HS256', kid: iam.signingKey.kid }).sign(secret)
    const e = await failure(a, token)
    expect(e).toBeInstanceOf(InvalidRequest)
    expect(iam.counts.jwks).toBe(0)
  })

  it('rejects an algorithm the issuer is not configured for even when the signature is good', async () => {
    const a = await adapter({}, { algorithms: ['RS256'] })
    const e = await failure(a, await ecIam.mint())
    expect(e.description).toMatch(/signed with one of RS256$/)
  })

  it('rejects a forged signature (right kid, wrong key)', async () => {
    const a = await adapter()
    const other = await TestIam.create({ issuer: iam.issuer })
    const forged = await other.mint({}, { header: { kid: iam.signingKey.kid } })
    expect((await failure(a, forged)).description).toBe('subject_token signature is invalid')
  })

  it.each([
    ['trailing slash added', 'https://iam.test.example//'],
    ['trailing slash removed', 'https://iam.test.example'],
    ['other host', 'https://evil.example/'],
  ])('rejects an untrusted issuer (%s)', async (_name, iss) => {
    const a = await adapter()
    const e = await failure(a, await iam.mint({ iss }))
    expect(e.description).toBe('subject_token issuer is not trusted by this broker')
    expect(e.description).not.toContain(iss)
  })

  it('rejects a path issuer differing only by a trailing slash', async () => {
    const a = await adapter()
    const e = await failure(a, await ecIam.mint({ iss: `${ecIam.issuer}/` }))
    expect(e.description).toBe('subject_token issuer is not trusted by this broker')
  })

  it('rejects a wrong audience', async () => {
    const a = await adapter({}, { audience: 'https://broker.example.org' })
    const e = await failure(a, await iam.mint())
    expect(e.description).toBe('subject_token audience is not accepted by this broker')
  })

  it('rejects an expired token (beyond the 60 s skew)', async () => {
    const a = await adapter()
    const now = Math.floor(Date.now() / 1000)
    const e = await failure(a, await iam.mint({ iat: now - 7200, nbf: now - 7200, exp: now - 61 }))
    expect(e.description).toBe('subject_token has expired')
  })

  it('rejects a token whose nbf is in the future (beyond the skew)', async () => {
    const a = await adapter()
    const now = Math.floor(Date.now() / 1000)
    expect((await failure(a, await iam.mint({ nbf: now + 600 }))).description).toBe('subject_token is not yet valid')
  })

  it('rejects a token issued in the future', async () => {
    const a = await adapter()
    const now = Math.floor(Date.now() / 1000)
    expect((await failure(a, await iam.mint({ iat: now + 600, nbf: undefined }, { omit: ['nbf'] }))).description).toBe('subject_token was issued in the future')
  })

  it('honours a smaller configured clock skew', async () => {
    const a = await adapter({ clock_skew_seconds: 5 })
    const now = Math.floor(Date.now() / 1000)
    expect((await failure(a, await iam.mint({ exp: now - 30, iat: now - 600, nbf: now - 600 }))).description).toBe('subject_token has expired')
  })

  it.each(['jti', 'sub', 'iat', 'exp'])('requires the %s claim', async (claim) => {
    const a = await adapter()
    const e = await failure(a, await iam.mint({}, { omit: [claim] }))
    expect(e.description).toBe(claim === 'sub' ? 'subject_token lacks the sub claim' : `subject_token lacks the ${claim} claim`)
  })

  it.each([
    ['missing', undefined, /no wlcg\.ver/],
    ['unknown major', '2.0', /unsupported WLCG profile major/],
    ['malformed', 'v1', /malformed wlcg\.ver/],
  ])('requires a WLCG 1.x wlcg.ver (%s)', async (_n, ver, msg) => {
    const a = await adapter()
    const token = ver === undefined ? await iam.mint({}, { omit: ['wlcg.ver'] }) : await iam.mint({ 'wlcg.ver': ver })
    expect((await failure(a, token)).description).toMatch(msg)
  })

  it('rejects malformed claims (groups not strings, overlong sub)', async () => {
    const a = await adapter()
    expect((await failure(a, await iam.mint({ 'wlcg.groups': [1, 2] }))).description).toBe('subject_token claim wlcg.groups is malformed')
    expect((await failure(a, await iam.mint({ sub: 'x'.repeat(256) }))).description).toMatch(/at most 255/)
  })

  it('rejects an oversized token before parsing or hashing', async () => {
    const a = await adapter()
    const token = await iam.mint({ padding: 'p'.repeat(17_000) })
    expect((await failure(a, token)).description).toBe('subject_token is longer than 16384 bytes')
    expect(iam.counts.discovery).toBe(0)
  })

  it.each([
    ['empty', ''],
    ['garbage', 'not a token at all!'],
    ['two segments', 'abc.def'],
    ['bad base64 JSON', 'eyJhbGciOi.eyJzdWIi.c2ln'],
    ['JSON array header', `${b64json([1])}.${b64json({})}.sig`],
    ['binary', '\u0000\u0001\u0002'],
  ])('rejects %s as invalid_request', async (_n, token) => {
    const a = await adapter()
    const e = await failure(a, token)
    expect(e).toBeInstanceOf(InvalidRequest)
    expect(e.status).toBe(400)
  })

  it('rejects an opaque token when no issuer has introspection enabled', async () => {
    const a = await adapter()
    expect((await failure(a, iam.mintOpaque())).description).toBe('subject_token is not a well-formed JWT')
  })

  it('rejects a token signed by a key the issuer does not publish', async () => {
    const a = await adapter({ jwks_cooldown_seconds: 0 })
    const stray = await TestIam.create({ issuer: iam.issuer })
    const e = await failure(a, await stray.mint())
    expect(e.description).toBe('subject_token is signed with a key its issuer does not publish')
  })
})

describe('IamSubjectTokenVerifier: IAM failures are temporarily_unavailable, bounded in time', () => {
  it.each([
    ['discovery down', 'discovery', 'down'],
    ['discovery bad JSON', 'discovery', 'badjson'],
    ['discovery HTTP 500', 'discovery', 'http500'],
    ['JWKS down', 'jwks', 'down'],
    ['JWKS bad JSON', 'jwks', 'badjson'],
    ['JWKS HTTP 500', 'jwks', 'http500'],
  ] as const)('%s → 503', async (_n, endpoint, fault) => {
    const a = await adapter()
    iam.faults[endpoint] = fault
    const e = await failure(a, await iam.mint())
    expect(e).toBeInstanceOf(TemporarilyUnavailable)
    expect(e.status).toBe(503)
  })

  it.each(['discovery', 'jwks'] as const)('slow %s: the timeout fires within its bound', async (endpoint) => {
    const a = await adapter({ timeout_seconds: 0.3, jwks_timeout_seconds: 0.3 })
    iam.faults[endpoint] = 'slow'
    const token = await iam.mint()
    const t0 = performance.now()
    const e = await failure(a, token)
    const ms = performance.now() - t0
    expect(e).toBeInstanceOf(TemporarilyUnavailable)
    expect(ms).toBeGreaterThanOrEqual(250)
    expect(ms).toBeLessThan(2000)
  })

  it('rejects discovery naming a different issuer (503, operator problem), accepting only IAM\'s trailing-slash quirk', async () => {
    const noSlash = await TestIam.create({ issuer: 'https://quirk.test.example', discoveryIssuer: 'https://quirk.test.example/' })
    const wrong = await TestIam.create({ issuer: 'https://wrong.test.example/', discoveryIssuer: 'https://other.test.example/' })
    server.use(...noSlash.handlers(), ...wrong.handlers())
    const a = await adapter({}, {}, [noSlash, wrong])
    const s = await a.verifier.verify(await noSlash.mint())
    expect(s.iss).toBe('https://quirk.test.example')
    const e = await failure(a, await wrong.mint())
    expect(e).toBeInstanceOf(TemporarilyUnavailable)
  })

  it('backs off after a failed discovery instead of asking IAM on every request', async () => {
    const a = await adapter({ discovery_retry_seconds: 60 })
    iam.faults.discovery = 'down'
    for (let i = 0; i < 5; i++) expect(await failure(a, await iam.mint())).toBeInstanceOf(TemporarilyUnavailable)
    expect(iam.counts.discovery).toBe(1)
  })

  it('keeps using the last good keys when a JWKS refresh fails', async () => {
    const a = await adapter({ jwks_cache_seconds: 1 })
    await a.verifier.verify(await iam.mint())
    expect(iam.counts.jwks).toBe(1)
    iam.faults.jwks = 'down'
    await new Promise((r) => setTimeout(r, 1100))
    await expect(a.verifier.verify(await iam.mint())).resolves.toBeTruthy()
    expect(iam.counts.jwks).toBe(2)
  })
})

describe('IamSubjectTokenVerifier: key rotation', () => {
  it('verifies a token with a new kid after one JWKS refetch; random kids cannot force more refetches', async () => {
    const rotating = await TestIam.create({ issuer: 'https://rotating.test.example/' })
    server.use(...rotating.handlers())
    const a = await adapter({ jwks_cooldown_seconds: 0.5 }, {}, [rotating])
    await a.verifier.verify(await rotating.mint())
    expect(rotating.counts.jwks).toBe(1)
    const stray = await TestIam.create({ issuer: rotating.issuer })
    await new Promise((r) => setTimeout(r, 600))
    await rotating.rotate()
    // New kid: exactly one refetch, then it verifies.
    await expect(a.verifier.verify(await rotating.mint())).resolves.toBeTruthy()
    expect(rotating.counts.jwks).toBe(2)
    // Within the cooldown an unknown kid is refused without asking IAM again.
    for (let i = 0; i < 3; i++) {
      expect((await failure(a, await stray.mint({}, { header: { kid: `bogus-${i}` } }))).description).toBe('subject_token is signed with a key its issuer does not publish')
    }
    expect(rotating.counts.jwks).toBe(2)
  })

  it('tries each candidate key when the token has no kid and IAM publishes several', async () => {
    const multi = await TestIam.create({ issuer: 'https://multi.test.example/' })
    server.use(...multi.handlers())
    const old = multi.signingKey
    await multi.rotate({ keepOld: true })
    const a = await adapter({}, {}, [multi])
    const token = await multi.mint({}, { key: old, header: { kid: undefined } })
    await expect(a.verifier.verify(token)).resolves.toBeTruthy()
  })
})

describe('IamSubjectTokenVerifier: verified-claims cache', () => {
  it('a second verify of the same token does no network and no signature check', async () => {
    const a = await adapter()
    const token = await iam.mint()
    const first = await a.verifier.verify(token)
    const counts = { ...iam.counts }
    expect(counts.discovery).toBe(1)
    expect(counts.jwks).toBe(1)
    iam.faults = { discovery: 'down', jwks: 'down', token: 'down', introspection: 'down' }
    for (let i = 0; i < 100; i++) expect(await a.verifier.verify(token)).toBe(first)
    expect(iam.counts).toEqual(counts)
    expect(a.verifier.cacheStats.hits).toBe(100)
  })

  it('concurrent first requests for one token share one verification', async () => {
    const a = await adapter()
    const token = await iam.mint()
    const results = await Promise.all(Array.from({ length: 20 }, () => a.verifier.verify(token)))
    expect(new Set(results).size).toBe(1)
    expect(iam.counts.jwks).toBe(1)
  })

  it('never answers from the cache for a token past its exp', async () => {
    const a = await adapter()
    const now = Math.floor(Date.now() / 1000)
    const shortLived = await iam.mint({ exp: now + 1 })
    await a.verifier.verify(shortLived)
    await new Promise((r) => setTimeout(r, 1100))
    // Now within the skew jose still accepts it, but the cache must not answer for a token past exp.
    const before = a.verifier.cacheStats.misses
    await a.verifier.verify(shortLived)
    expect(a.verifier.cacheStats.misses).toBe(before + 1)
  })
})

describe('IamSubjectTokenVerifier: introspection', () => {
  it('introspects an opaque token with client authentication', async () => {
    const a = await adapter({}, { introspection: 'opaque' }, [iam])
    const s = await a.verifier.verify(iam.mintOpaque({ sub: 'opaque-user', username: 'bob', groups: ['/cms'] }))
    expect(s).toMatchObject({ iss: iam.issuer, sub: 'opaque-user', preferred_username: 'bob', groups: ['/cms'] })
    expect(iam.counts.introspection).toBeGreaterThanOrEqual(1)
  })

  it('an opaque token names no issuer: with two IAMs introspecting, it is refused and sent to neither', async () => {
    // Asking each IAM in turn would hand one IAM's bearer token to another IAM's operators.
    const a = await adapter({}, { introspection: 'opaque' })
    const e = await failure(a, ecIam.mintOpaque({ sub: 'ec-user' }))
    expect(e).toBeInstanceOf(InvalidRequest)
    expect(e.description).toBe('subject_token is opaque and names no issuer, and 2 trusted IAMs introspect: it is sent to none of them (a token must only reach the IAM that issued it); present a JWT access token')
    expect(iam.counts.introspection + ecIam.counts.introspection).toBe(0)
  })

  it('one IAM introspecting among several JWT-only ones gets the opaque token', async () => {
    const a = await createIamAdapter({ ...iamConfigFor([iam, ecIam]), issuers: iamConfigFor([iam, ecIam]).issuers.map((i, n) => ({ ...i, introspection: n === 1 ? 'opaque' as const : 'off' as const })) },
      { log: silentLogger, fetch: mswFetch, readFile: secretReader(iam, ecIam) })
    adapters.push(a)
    await expect(a.verifier.verify(ecIam.mintOpaque({ sub: 'ec-user' }))).resolves.toMatchObject({ iss: ecIam.issuer, sub: 'ec-user' })
    expect(iam.counts.introspection).toBe(0)
  })

  it('active=false is invalid_request', async () => {
    const a = await adapter({}, { introspection: 'opaque' }, [iam])
    const e = await failure(a, 'unknown-opaque-token-value')
    expect(e).toBeInstanceOf(InvalidRequest)
    expect(e.description).toBe('subject_token is not active')
  })

  it('with introspection always, a revoked JWT is refused even though its signature is fine', async () => {
    const a = await adapter({}, { introspection: 'always' })
    const token = await iam.mint()
    await a.verifier.verify(token)
    const fresh = await iam.mint()
    iam.revoke(fresh)
    expect((await failure(a, fresh)).description).toBe('subject_token is not active')
  })

  it('refuses an introspected token issued in the future, as a JWT with that iat is refused', async () => {
    const a = await adapter({}, { introspection: 'opaque' }, [iam])
    const now = Math.floor(Date.now() / 1000)
    // 600 s ahead is beyond the 60 s skew (docs/iam-and-wlcg.md §2.3): the same iat a JWT is refused for above.
    const e = await failure(a, iam.mintOpaque({ iat: now + 600, exp: now + 3600 }))
    expect(e).toBeInstanceOf(InvalidRequest)
    expect(e.description).toBe('subject_token was issued in the future')
  })

  it('refuses an introspected nbf or iat that is not a number, as jose refuses it in a JWT', async () => {
    const a = await adapter({}, { introspection: 'opaque' }, [iam])
    for (const claim of ['nbf', 'iat']) {
      const e = await failure(a, iam.mintOpaque({ [claim]: 'soon' }))
      expect(e).toBeInstanceOf(InvalidRequest)
      expect(e.description).toBe(`subject_token claim ${claim} is invalid`)
    }
  })

  it('accepts an introspected iat within the clock skew', async () => {
    const a = await adapter({}, { introspection: 'opaque' }, [iam])
    const now = Math.floor(Date.now() / 1000)
    await expect(a.verifier.verify(iam.mintOpaque({ sub: 'skewed', iat: now + 30, exp: now + 3600 }))).resolves.toMatchObject({ sub: 'skewed' })
  })

  it('introspection down is 503, not invalid', async () => {
    const a = await adapter({}, { introspection: 'opaque' }, [iam])
    iam.faults.introspection = 'down'
    expect(await failure(a, iam.mintOpaque())).toBeInstanceOf(TemporarilyUnavailable)
  })

  it('introspected results are cached only for introspection_cache_seconds', async () => {
    const a = await adapter({ introspection_cache_seconds: 1 }, { introspection: 'opaque' }, [iam])
    const token = iam.mintOpaque()
    await a.verifier.verify(token)
    await a.verifier.verify(token)
    const n = iam.counts.introspection
    await new Promise((r) => setTimeout(r, 1100))
    await a.verifier.verify(token)
    expect(iam.counts.introspection).toBe(n + 1)
  })
})

describe('test harness', () => {
  it('msw refuses any request without a handler (nothing reaches the network)', async () => {
    await expect(globalThis.fetch('https://unmocked.test.example/')).rejects.toThrow()
  })
})
