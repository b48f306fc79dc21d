import { decodeJwt } from 'jose'
import { http, HttpResponse } from 'msw'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BrokerError, InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget, TemporarilyUnavailable } from '../../src/errors.ts'
import { createIamAdapter, type IamAdapter } from '../../src/iam/create_iam_adapter.ts'
import { IamConfigSchema } from '../../src/iam/iam_config.ts'
import { MemoryRefreshTokenStore } from '../../src/iam/refresh_token_store.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { brokerClientKeyPair, iamConfigFor, mswFetch, secretReader, TestIam, useMswIam } from '../support/iam.ts'

const iam = await TestIam.create()
const server = useMswIam(iam)

const AUD = 'https://storage.example.org'
const SCOPES = ['compute.read', 'compute.create']

let adapters: IamAdapter[] = []
let store: MemoryRefreshTokenStore
async function adapter(overrides: Record<string, unknown> = {}): Promise<IamAdapter> {
  const a = await createIamAdapter(iamConfigFor(iam, overrides), { log: silentLogger, fetch: mswFetch, readFile: secretReader(iam), refreshTokens: store })
  adapters.push(a)
  return a
}

/** A verified caller and its token, as POST /token would hold them. */
async function caller(a: IamAdapter, claims: Record<string, unknown> = {}) {
  const subjectToken = await iam.mint({ scope: 'openid compute.read compute.create compute.modify offline_access', ...claims })
  return { subjectToken, subject: await a.verifier.verify(subjectToken) }
}

async function failure(p: Promise<unknown>): Promise<BrokerError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(BrokerError)
  return err as BrokerError
}

beforeEach(() => {
  store = new MemoryRefreshTokenStore()
  iam.counts = { discovery: 0, jwks: 0, token: 0, introspection: 0, revocation: 0 }
  iam.faults = { discovery: 'ok', jwks: 'ok', token: 'ok', introspection: 'ok' }
  iam.refusedScopes.clear()
  iam.clearRefreshTokens()
  iam.rotateRefreshTokens = true
  iam.tokenRequests = []
  iam.tokenAuthMethods = []
})
afterEach(() => {
  for (const a of adapters) a.close()
  adapters = []
})

describe('IamTokenExchanger.exchange', () => {
  it('obtains an audience-narrowed access token with client_secret_basic, always sending scope', async () => {
    const a = await adapter()
    const c = await caller(a)
    const r = await a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD, 'condor://ce.example.org:9619'] })
    expect(r).toMatchObject({ issuedTokenType: 'urn:ietf:params:oauth:token-type:access_token', scopes: SCOPES, audience: [AUD, 'condor://ce.example.org:9619'], expiresIn: 3600, refreshTokenStored: false })
    expect(decodeJwt(r.accessToken)).toMatchObject({ sub: c.subject.sub, aud: [AUD, 'condor://ce.example.org:9619'], act: { sub: iam.brokerClientId } })
    const sent = iam.tokenRequests[0]!
    expect(Object.fromEntries(sent)).toEqual({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: c.subjectToken,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      scope: 'compute.read compute.create',
      audience: `${AUD} condor://ce.example.org:9619`,
    })
    expect(iam.tokenAuthMethods).toEqual(['client_secret_basic'])
    expect(store.size).toBe(0)
  })

  it('refuses a short-changed result, naming the dropped scopes', async () => {
    const a = await adapter()
    const c = await caller(a)
    iam.refusedScopes.add('compute.create').add('storage.read:/cms')
    const e = await failure(a.exchanger.exchange({ ...c, scopes: ['compute.read', 'compute.create', 'storage.read:/cms'], audience: [AUD] }))
    expect(e).toBeInstanceOf(InvalidScope)
    expect(e.description).toBe('IAM did not grant: compute.create storage.read:/cms')
  })

  it('refuses a dropped offline_access, does not keep the refresh token and revokes what IAM issued', async () => {
    const a = await adapter()
    const c = await caller(a)
    iam.refusedScopes.add('compute.create')
    const e = await failure(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD], offlineAccess: { key: 'k1' } }))
    expect(e.description).toBe('IAM did not grant: compute.create')
    expect(store.size).toBe(0)
    await expect.poll(() => iam.counts.revocation).toBe(1)
    expect(iam.liveRefreshTokens).toHaveLength(0)

    iam.refusedScopes.clear()
    iam.refusedScopes.add('offline_access')
    const e2 = await failure(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD], offlineAccess: { key: 'k1' } }))
    expect(e2).toBeInstanceOf(InvalidScope)
    expect(e2.description).toMatch(/offline_access/)
  })

  it('refuses scopes IAM added that were not requested, but tolerates the implicit wlcg.groups', async () => {
    const a = await adapter()
    const c = await caller(a)
    const answer = (scope: string) => http.post(iam.tokenEndpoint, async () => HttpResponse.json({ access_token: await iam.mint({ aud: AUD }), token_type: 'Bearer', expires_in: 600, scope }))
    server.use(answer('compute.read compute.create compute.cancel'))
    expect((await failure(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD] }))).description).toBe('IAM granted scopes that were not requested: compute.cancel')
    server.use(answer('compute.read wlcg.groups:/cms wlcg.groups'))
    await expect(a.exchanger.exchange({ ...c, scopes: ['compute.read', 'wlcg.groups:/cms'], audience: [AUD] })).resolves.toMatchObject({ scopes: ['compute.read', 'wlcg.groups:/cms', 'wlcg.groups'] })
  })

  it('reads the granted scope from the token when IAM omits scope in the response', async () => {
    const a = await adapter()
    const c = await caller(a)
    server.use(http.post(iam.tokenEndpoint, async () => HttpResponse.json({ access_token: await iam.mint({ aud: AUD, scope: 'compute.read' }), token_type: 'Bearer', expires_in: 600 })))
    expect((await failure(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD] }))).description).toBe('IAM did not grant: compute.create')
  })

  it('refuses a token IAM did not narrow to the requested audience', async () => {
    const a = await adapter()
    const c = await caller(a)
    server.use(http.post(iam.tokenEndpoint, async () => HttpResponse.json({ access_token: await iam.mint({ aud: 'https://wlcg.cern.ch/jwt/v1/any', scope: 'compute.read' }), token_type: 'Bearer', scope: 'compute.read' })))
    expect(await failure(a.exchanger.exchange({ ...c, scopes: ['compute.read'], audience: [AUD] }))).toBeInstanceOf(InvalidTarget)
  })

  it('refuses a token IAM aimed at more audiences than requested, as it refuses extra scopes', async () => {
    // IAM sets aud to exactly the requested audience; one more is a token usable at a service nobody asked for.
    const a = await adapter()
    const c = await caller(a)
    server.use(http.post(iam.tokenEndpoint, async () => HttpResponse.json({ access_token: await iam.mint({ aud: [AUD, 'https://other.example.org'], scope: 'compute.read' }), token_type: 'Bearer', scope: 'compute.read' })))
    const e = await failure(a.exchanger.exchange({ ...c, scopes: ['compute.read'], audience: [AUD] }))
    expect(e).toBeInstanceOf(InvalidTarget)
    expect(e.description).toBe('IAM aimed the token at audiences that were not requested: https://other.example.org')
  })

  it('relays IAM invalid_grant (e.g. AUP not signed) as invalid_grant with IAM\'s reason', async () => {
    const a = await adapter()
    const c = await caller(a)
    server.use(http.post(iam.tokenEndpoint, () => HttpResponse.json({ error: 'invalid_grant', error_description: 'User needs to sign the AUP\u0007' }, { status: 400 })))
    const e = await failure(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD] }))
    expect(e).toBeInstanceOf(InvalidGrant)
    expect(e.description).toBe('IAM refused the grant: User needs to sign the AUP')
  })

  it('maps a subject token IAM no longer holds to invalid_request', async () => {
    const a = await adapter()
    const subjectToken = await iam.mint({}, { unstored: true })
    const subject = await a.verifier.verify(subjectToken)
    expect(await failure(a.exchanger.exchange({ subjectToken, subject, scopes: SCOPES, audience: [AUD] }))).toBeInstanceOf(InvalidRequest)
  })

  it.each(['down', 'http500', 'badjson'] as const)('token endpoint %s → temporarily_unavailable', async (fault) => {
    const a = await adapter()
    const c = await caller(a)
    iam.faults.token = fault
    const e = await failure(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD] }))
    expect(e).toBeInstanceOf(TemporarilyUnavailable)
    expect(e.status).toBe(503)
  })

  it('a slow IAM times out within the bound', async () => {
    const a = await adapter({ timeout_seconds: 0.3 })
    const c = await caller(a)
    iam.faults.token = 'slow'
    const t0 = performance.now()
    expect(await failure(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD] }))).toBeInstanceOf(TemporarilyUnavailable)
    expect(performance.now() - t0).toBeLessThan(2000)
  })

  it('a broker with the wrong client secret gets 503 (operator problem), not 401 for the caller', async () => {
    const a = await createIamAdapter(iamConfigFor(iam), { log: silentLogger, fetch: mswFetch, readFile: () => Buffer.from('wrong') })
    adapters.push(a)
    const c = await caller(a)
    expect(await failure(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD] }))).toBeInstanceOf(TemporarilyUnavailable)
  })

  it('authenticates with private_key_jwt when configured', async () => {
    const { privatePem, publicKey } = await brokerClientKeyPair('ES256')
    iam.brokerClientPublicKey = publicKey
    const cfg = IamConfigSchema.parse({
      issuers: [{ issuer: iam.issuer, client: { client_id: iam.brokerClientId, auth_method: 'private_key_jwt', private_key_file: '/secrets/key.pem', private_key_kid: 'broker-1' } }],
    })
    const a = await createIamAdapter(cfg, { log: silentLogger, fetch: mswFetch, readFile: () => Buffer.from(privatePem) })
    adapters.push(a)
    const c = await caller(a)
    await expect(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD] })).resolves.toMatchObject({ scopes: SCOPES })
    expect(iam.tokenAuthMethods).toEqual(['private_key_jwt'])
    expect(iam.tokenRequests[0]!.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
    expect(iam.tokenRequests[0]!.has('client_secret')).toBe(false)
  })

  it('refuses to exchange at an issuer where the broker has no client', async () => {
    const cfg = IamConfigSchema.parse({ issuers: [{ issuer: iam.issuer }] })
    const a = await createIamAdapter(cfg, { log: silentLogger, fetch: mswFetch })
    adapters.push(a)
    const c = await caller(a)
    expect(await failure(a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD] }))).toBeInstanceOf(InvalidTarget)
    expect(iam.counts.token).toBe(0)
  })

  it('refuses offline_access without a place to keep the refresh token (programming error)', async () => {
    const a = await adapter()
    const c = await caller(a)
    await expect(a.exchanger.exchange({ ...c, scopes: ['offline_access'], audience: [] })).rejects.toThrow(TypeError)
    await expect(a.exchanger.exchange({ ...c, scopes: [], audience: [] })).rejects.toThrow(TypeError)
  })
})

describe('IamTokenExchanger: refresh tokens', () => {
  it('keeps the refresh token (never returns it), and persists every rotated one', async () => {
    const a = await adapter()
    const c = await caller(a)
    const r = await a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD], offlineAccess: { key: 'credmon:alice' } })
    expect(r.refreshTokenStored).toBe(true)
    const first = (await store.get('credmon:alice'))!
    expect(JSON.stringify(r)).not.toContain(first.refreshToken)
    expect(first).toMatchObject({ issuer: iam.issuer, subject: c.subject.sub, clientId: iam.brokerClientId, scopes: [...SCOPES, 'offline_access'], audience: [AUD] })
    expect(iam.tokenRequests[0]!.get('scope')).toBe('compute.read compute.create offline_access')

    const r2 = await a.exchanger.refresh('credmon:alice', { scopes: ['compute.read'] })
    expect(r2).toMatchObject({ scopes: ['compute.read'], refreshTokenStored: true })
    const second = (await store.get('credmon:alice'))!
    expect(second.refreshToken).not.toBe(first.refreshToken)
    // IAM made the old one single-use: only the stored newest works.
    expect(iam.liveRefreshTokens).toEqual([second.refreshToken])
    expect(iam.tokenRequests[1]!.get('scope')).toBe('compute.read')

    await a.exchanger.refresh('credmon:alice')
    const third = (await store.get('credmon:alice'))!
    expect(iam.liveRefreshTokens).toEqual([third.refreshToken])
    expect(iam.tokenRequests[2]!.get('scope')).toBe('compute.read compute.create offline_access')
  })

  it('serialises concurrent refreshes of one key so a single-use token is never spent twice', async () => {
    const a = await adapter()
    const c = await caller(a)
    await a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD], offlineAccess: { key: 'k' } })
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => a.exchanger.refresh('k', { scopes: ['compute.read'] })))
    expect(results.map((r) => r.status)).toEqual(Array(5).fill('fulfilled'))
    expect(iam.liveRefreshTokens).toEqual([(await store.get('k'))!.refreshToken])
  })

  it('keeps a non-rotating refresh token as it is', async () => {
    iam.rotateRefreshTokens = false
    const a = await adapter()
    const c = await caller(a)
    await a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD], offlineAccess: { key: 'k' } })
    const before = (await store.get('k'))!.refreshToken
    await expect(a.exchanger.refresh('k')).resolves.toMatchObject({ refreshTokenStored: false })
    expect((await store.get('k'))!.refreshToken).toBe(before)
  })

  it('a revoked refresh token is invalid_grant and is forgotten', async () => {
    const a = await adapter()
    const c = await caller(a)
    await a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD], offlineAccess: { key: 'k' } })
    server.use(http.post(iam.tokenEndpoint, () => HttpResponse.json({ error: 'invalid_grant', error_description: 'Invalid refresh token' }, { status: 400 })))
    expect(await failure(a.exchanger.refresh('k'))).toBeInstanceOf(InvalidGrant)
    expect(await store.get('k')).toBeUndefined()
    expect(await failure(a.exchanger.refresh('k'))).toBeInstanceOf(InvalidGrant)
  })

  it('IAM down during refresh is 503 and the stored token is kept', async () => {
    const a = await adapter()
    const c = await caller(a)
    await a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD], offlineAccess: { key: 'k' } })
    const before = (await store.get('k'))!.refreshToken
    iam.faults.token = 'down'
    expect(await failure(a.exchanger.refresh('k'))).toBeInstanceOf(TemporarilyUnavailable)
    expect((await store.get('k'))!.refreshToken).toBe(before)
  })

  it('refuses a refresh whose result dropped scopes, after persisting the rotated token', async () => {
    const a = await adapter()
    const c = await caller(a)
    await a.exchanger.exchange({ ...c, scopes: SCOPES, audience: [AUD], offlineAccess: { key: 'k' } })
    iam.refusedScopes.add('compute.create')
    expect((await failure(a.exchanger.refresh('k'))).description).toBe('IAM did not grant: compute.create')
    expect(iam.liveRefreshTokens).toEqual([(await store.get('k'))!.refreshToken])
  })
})
