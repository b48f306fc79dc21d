// The development IAM over real loopback sockets: IAM's endpoints and issuer, WLCG claims, and IAM's
// token-exchange semantics (docs/iam-and-wlcg.md §1.1–§1.5).
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose'
import { allowInsecureRequests, discovery } from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devIamTokenRequest, devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import { startDevIam, type RunningDevIam } from '../../src/dev_iam/start_dev_iam.ts'

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`
}

async function post(url: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...headers },
    body: new URLSearchParams(form),
  })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> }
}

describe('development IAM', () => {
  let iam: RunningDevIam
  let alice: string
  const exchange = (clientId: string, params: Record<string, string>) =>
    devIamTokenRequest(iam, clientId, { grant_type: TOKEN_EXCHANGE, subject_token_type: ACCESS_TOKEN, ...params })

  beforeAll(async () => {
    iam = await startDevIam({ port: 0 })
    alice = (await devIamUserToken(iam, 'alice', { scope: 'openid profile wlcg wlcg.groups compute.read offline_access' })).accessToken
  })
  afterAll(async () => { await iam?.close() })

  describe('endpoints (§1.1, §1.2)', () => {
    it('publishes discovery with the trailing-slash issuer and IAM paths', async () => {
      expect(iam.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)
      const res = await fetch(`${iam.issuer}.well-known/openid-configuration`)
      expect(res.status).toBe(200)
      const doc = await res.json() as Record<string, unknown>
      expect(doc.issuer).toBe(iam.issuer)
      expect(doc.jwks_uri).toBe(`${iam.issuer}jwk`)
      expect(doc.token_endpoint).toBe(`${iam.issuer}token`)
      expect(doc.introspection_endpoint).toBe(`${iam.issuer}introspect`)
      expect(doc.revocation_endpoint).toBe(`${iam.issuer}revoke`)
      expect(doc.grant_types_supported).toEqual(expect.arrayContaining(['client_credentials', 'refresh_token', TOKEN_EXCHANGE]))
    })

    it('passes openid-client discovery, which compares the issuer byte for byte', async () => {
      const cfg = await discovery(new URL(iam.issuer), 'broker', 'broker-secret', undefined, { execute: [allowInsecureRequests] })
      expect(cfg.serverMetadata().issuer).toBe(iam.issuer)
    })

    it('serves the JWKS at /jwk with public RS256 keys only and IAM\'s cache lifetime', async () => {
      const res = await fetch(`${iam.issuer}jwk`)
      expect(res.headers.get('cache-control')).toBe('max-age=21600')
      const { keys } = await res.json() as { keys: Record<string, unknown>[] }
      expect(keys).toHaveLength(1)
      expect(keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig', kid: expect.any(String) })
      expect(keys[0]).not.toHaveProperty('d')
    })
  })

  describe('user tokens (development-only password grant)', () => {
    it('gives alice a WLCG-profile token with her groups', async () => {
      const claims = decodeJwt(alice)
      expect(claims).toMatchObject({
        iss: iam.issuer, aud: 'https://wlcg.cern.ch/jwt/v1/any', client_id: 'dev-cli', 'wlcg.ver': '1.0',
        'wlcg.groups': ['/cms', '/ctb-admins', '/htc/users'], preferred_username: 'alice',
        scope: 'openid profile wlcg wlcg.groups compute.read offline_access',
      })
      expect(claims.sub).toMatch(UUID)
      expect(claims.jti).toMatch(UUID)
      expect(claims.nbf).toBe(claims.iat)
      expect(claims.exp! - claims.iat!).toBe(3600)
    })

    it('gives bob /cms/pilots, carol no wlcg.groups claim, and each user a distinct stable sub', async () => {
      const bob = decodeJwt((await devIamUserToken(iam, 'bob')).accessToken)
      const carol = decodeJwt((await devIamUserToken(iam, 'carol')).accessToken)
      expect(bob['wlcg.groups']).toEqual(['/cms/pilots'])
      expect(carol).not.toHaveProperty('wlcg.groups')
      expect(new Set([bob.sub, carol.sub, decodeJwt(alice).sub]).size).toBe(3)
      expect(decodeJwt((await devIamUserToken(iam, 'bob')).accessToken).sub).toBe(bob.sub)
    })

    it('puts wlcg.groups in the token only when a group scope is asked, requested group first', async () => {
      const none = decodeJwt((await devIamUserToken(iam, 'alice', { scope: 'openid compute.read' })).accessToken)
      expect(none).not.toHaveProperty('wlcg.groups')
      const ordered = decodeJwt((await devIamUserToken(iam, 'alice', { scope: 'wlcg.groups:/ctb-admins' })).accessToken)
      expect(ordered['wlcg.groups']).toEqual(['/ctb-admins', '/cms', '/htc/users'])
    })

    it('refuses a wrong password with invalid_grant and an unknown scope with invalid_scope', async () => {
      const wrong = await devIamTokenRequest(iam, 'dev-cli', { grant_type: 'password', username: 'alice', password: 'nope', scope: 'openid' })
      expect(wrong).toMatchObject({ status: 400, body: { error: 'invalid_grant' } })
      const unknown = await devIamTokenRequest(iam, 'dev-cli', { grant_type: 'password', username: 'mallory', password: 'x', scope: 'openid' })
      expect(unknown).toMatchObject({ status: 400, body: { error: 'invalid_grant', error_description: wrong.body.error_description } })
      const scope = await devIamTokenRequest(iam, 'dev-cli', { grant_type: 'password', username: 'alice', password: 'alice-password', scope: 'openid iam:admin.write' })
      expect(scope).toMatchObject({ status: 400, body: { error: 'invalid_scope' } })
    })
  })

  describe('client_credentials', () => {
    it('issues a client token whose sub is the client id', async () => {
      const { status, body } = await devIamTokenRequest(iam, 'provisioner', { grant_type: 'client_credentials', scope: 'compute.read compute.create' })
      expect(status).toBe(200)
      expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 3600, scope: 'compute.read compute.create' })
      expect(body).not.toHaveProperty('refresh_token')
      const claims = decodeJwt(String(body.access_token))
      expect(claims).toMatchObject({ sub: 'provisioner', client_id: 'provisioner', 'wlcg.ver': '1.0', aud: 'https://wlcg.cern.ch/jwt/v1/any' })
      expect(claims).not.toHaveProperty('wlcg.groups')
    })

    it('honours audience and a shorter expires_in, refuses an unregistered scope and a client without the grant', async () => {
      const ok = await devIamTokenRequest(iam, 'provisioner', { grant_type: 'client_credentials', scope: 'compute.read', audience: 'https://ce.example.org', expires_in: '600' })
      expect(ok.body.expires_in).toBe(600)
      expect(decodeJwt(String(ok.body.access_token)).aud).toBe('https://ce.example.org')
      const scope = await devIamTokenRequest(iam, 'provisioner', { grant_type: 'client_credentials', scope: 'storage.read:/' })
      expect(scope).toMatchObject({ status: 400, body: { error: 'invalid_scope' } })
      const grant = await devIamTokenRequest(iam, 'dev-cli', { grant_type: 'client_credentials', scope: 'openid' })
      expect(grant.status).toBe(400)
      expect(grant.body).not.toHaveProperty('access_token')
    })

    it('refuses an unauthenticated or wrongly authenticated client', async () => {
      const none = await post(`${iam.issuer}token`, { grant_type: 'client_credentials' })
      expect(none.status).toBe(400)
      const wrong = await post(`${iam.issuer}token`, { grant_type: 'client_credentials' }, { authorization: basic('provisioner', 'wrong-secret') })
      expect(wrong).toMatchObject({ status: 401, body: { error: 'invalid_client' } })
      expect(wrong.headers.get('www-authenticate')).toMatch(/^Basic /)
    })
  })

  describe('token exchange with IAM semantics (§1.4)', () => {
    it('requires scope: invalid_request', async () => {
      const { status, body } = await exchange('broker', { subject_token: alice })
      expect(status).toBe(400)
      expect(body).toEqual({ error: 'invalid_request', error_description: 'The scope parameter is required for a token exchange request!' })
    })

    it('puts the requested audience in aud, keeps the subject, adds act and IAM\'s issued_token_type', async () => {
      const { status, body } = await exchange('broker', { subject_token: alice, scope: 'openid wlcg.groups compute.read', audience: 'condor://schedd.example.org:9618' })
      expect(status).toBe(200)
      expect(body).toMatchObject({ token_type: 'Bearer', issued_token_type: 'urn:ietf:params:oauth:token-type:jwt', scope: 'openid wlcg.groups compute.read' })
      expect(body).not.toHaveProperty('refresh_token')
      const claims = decodeJwt(String(body.access_token))
      expect(claims).toMatchObject({
        sub: decodeJwt(alice).sub, aud: 'condor://schedd.example.org:9618', client_id: 'broker', act: { sub: 'broker' },
        'wlcg.groups': ['/cms', '/ctb-admins', '/htc/users'],
      })
    })

    it('takes aud from resource before aud before audience, split on spaces', async () => {
      const r = await exchange('broker', { subject_token: alice, scope: 'compute.read', resource: 'https://a.example.org', aud: 'b', audience: 'c' })
      expect(decodeJwt(String(r.body.access_token)).aud).toBe('https://a.example.org')
      const a = await exchange('broker', { subject_token: alice, scope: 'compute.read', aud: 'b1 b2', audience: 'c' })
      expect(decodeJwt(String(a.body.access_token)).aud).toEqual(['b1', 'b2'])
      const bad = await exchange('broker', { subject_token: alice, scope: 'compute.read', resource: 'https://a.example.org/?q=1' })
      expect(bad).toMatchObject({ status: 400, body: { error: 'invalid_target' } })
    })

    it('issues a refresh token for offline_access when the exchanging client differs, and the RT refreshes', async () => {
      const { status, body } = await exchange('broker', { subject_token: alice, scope: 'openid offline_access compute.read' })
      expect(status).toBe(200)
      expect(body.refresh_token).toEqual(expect.any(String))
      const refreshed = await devIamTokenRequest(iam, 'broker', { grant_type: 'refresh_token', refresh_token: String(body.refresh_token), scope: 'compute.read' })
      expect(refreshed).toMatchObject({ status: 200, body: { scope: 'compute.read', refresh_token: body.refresh_token } })
      expect(decodeJwt(String(refreshed.body.access_token))).toMatchObject({ sub: decodeJwt(alice).sub, client_id: 'broker', act: { sub: 'broker' } })
      const upscope = await devIamTokenRequest(iam, 'broker', { grant_type: 'refresh_token', refresh_token: String(body.refresh_token), scope: 'compute.cancel' })
      expect(upscope).toMatchObject({ status: 400, body: { error: 'invalid_scope' } })
      const stolen = await devIamTokenRequest(iam, 'dev-cli', { grant_type: 'refresh_token', refresh_token: String(body.refresh_token) })
      expect(stolen).toMatchObject({ status: 400, body: { error: 'invalid_grant' } })
    })

    it('refuses actor_token and want_composite: invalid_request "Delegation not supported"', async () => {
      for (const extra of [{ actor_token: alice, actor_token_type: ACCESS_TOKEN }, { want_composite: 'true' }] as Record<string, string>[]) {
        const { status, body } = await exchange('broker', { subject_token: alice, scope: 'compute.read', ...extra })
        expect(status).toBe(400)
        expect(body).toEqual({ error: 'invalid_request', error_description: 'Delegation not supported' })
      }
    })

    it('refuses a subject token it did not issue or no longer holds: invalid_grant', async () => {
      const forged = alice.slice(0, -4) + (alice.endsWith('AAAA') ? 'BBBB' : 'AAAA')
      for (const subject of [forged, 'not-a-token']) {
        const { status, body } = await exchange('broker', { subject_token: subject, scope: 'compute.read' })
        expect(status).toBe(400)
        expect(body.error).toBe('invalid_grant')
      }
      const bob = (await devIamUserToken(iam, 'bob')).accessToken
      const revoke = await post(`${iam.issuer}revoke`, { token: bob }, { authorization: basic('dev-cli', 'dev-cli-secret') })
      expect(revoke.status).toBe(200)
      const after = await exchange('broker', { subject_token: bob, scope: 'compute.read' })
      expect(after).toMatchObject({ status: 400, body: { error: 'invalid_grant' } })
    })

    it('refuses scopes either client may not have, and clients without the grant', async () => {
      const scope = await exchange('broker', { subject_token: alice, scope: 'iam:admin.read' })
      expect(scope).toMatchObject({ status: 400, body: { error: 'invalid_scope' } })
      const grant = await exchange('provisioner', { subject_token: alice, scope: 'compute.read' })
      expect(grant.status).toBe(400)
      expect(grant.body).not.toHaveProperty('access_token')
    })

    it('exchanges a client_credentials token keeping its sub', async () => {
      const cc = await devIamTokenRequest(iam, 'provisioner', { grant_type: 'client_credentials', scope: 'compute.read' })
      const { status, body } = await exchange('broker', { subject_token: String(cc.body.access_token), scope: 'compute.read' })
      expect(status).toBe(200)
      expect(decodeJwt(String(body.access_token))).toMatchObject({ sub: 'provisioner', client_id: 'broker', act: { sub: 'broker' } })
    })
  })

  describe('signature and introspection', () => {
    it('verifies with jose against the JWKS with the issuer pinned, and not with the slash dropped', async () => {
      const jwks = createRemoteJWKSet(new URL(`${iam.issuer}jwk`))
      const { payload, protectedHeader } = await jwtVerify(alice, jwks, { issuer: iam.issuer, algorithms: ['RS256'], requiredClaims: ['jti'] })
      expect(protectedHeader.alg).toBe('RS256')
      expect(payload.sub).toBe(decodeJwt(alice).sub)
      await expect(jwtVerify(alice, jwks, { issuer: iam.issuer.slice(0, -1), algorithms: ['RS256'] }))
        .rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' })
    })

    it('introspects a held token for an authenticated client', async () => {
      const { status, headers, body } = await post(`${iam.issuer}introspect`, { token: alice }, { authorization: basic('broker', 'broker-secret') })
      expect(status).toBe(200)
      expect(headers.get('cache-control')).toBe('no-store')
      expect(body).toMatchObject({
        active: true, iss: iam.issuer, sub: decodeJwt(alice).sub, client_id: 'dev-cli', jti: decodeJwt(alice).jti,
        scope: 'openid profile wlcg wlcg.groups compute.read offline_access', username: 'alice', 'wlcg.groups': ['/cms', '/ctb-admins', '/htc/users'],
      })
      const unknown = await post(`${iam.issuer}introspect`, { token: 'nope' }, { authorization: basic('broker', 'broker-secret') })
      expect(unknown.body).toEqual({ active: false })
    })

    it('refuses introspection without client authentication, with a wrong secret, or with an unregistered method', async () => {
      const none = await post(`${iam.issuer}introspect`, { token: alice })
      expect(none).toMatchObject({ status: 401, body: { error: 'invalid_client' } })
      expect(none.body).not.toHaveProperty('active')
      const wrong = await post(`${iam.issuer}introspect`, { token: alice }, { authorization: basic('broker', 'broker-secreT') })
      expect(wrong.status).toBe(401)
      expect(wrong.headers.get('www-authenticate')).toMatch(/^Basic /)
      // broker is registered for client_secret_basic; IAM ≥ 1.14.1 enforces the registered method.
      const postAuth = await post(`${iam.issuer}introspect`, { token: alice, client_id: 'broker', client_secret: 'broker-secret' })
      expect(postAuth.status).toBe(401)
    })
  })
})

describe('development IAM configuration variants', () => {
  let iam: RunningDevIam
  beforeAll(async () => {
    iam = await startDevIam({
      config: {
        clients: [
          { client_id: 'selfish', client_secret: 'selfish-secret', grant_types: ['password', 'urn:ietf:params:oauth:grant-type:token-exchange'], scopes: ['openid', 'offline_access', 'compute.read', 'storage.read:/cms'] },
          { client_id: 'rotator', client_secret: 'rotator-secret', grant_types: ['urn:ietf:params:oauth:grant-type:token-exchange', 'refresh_token'], scopes: ['openid', 'offline_access', 'compute.read', 'storage.read:/'], rotate_refresh_tokens: true, access_token_lifetime: 1200 },
          { client_id: 'stranger', client_secret: 'stranger-secret', grant_types: ['urn:ietf:params:oauth:grant-type:token-exchange'], scopes: ['openid', 'compute.read'] },
        ],
        users: [{ username: 'dana', password: 'dana-password', groups: ['/atlas'], denied_scopes: ['compute.read'] }, { username: 'erin', password: 'erin-password' }],
        exchange_policies: [
          { rule: 'PERMIT', origin: '*', destination: 'selfish' },
          { rule: 'PERMIT', origin: 'selfish', destination: 'rotator', scopes: ['openid', 'offline_access', 'compute.read', 'storage.read:/cms'] },
        ],
      },
    })
  })
  afterAll(async () => { await iam?.close() })
  const user = async (username: string, scope: string) => (await devIamUserToken(iam, username, { clientId: 'selfish', scope })).accessToken
  const exchange = (clientId: string, params: Record<string, string>) =>
    devIamTokenRequest(iam, clientId, { grant_type: TOKEN_EXCHANGE, subject_token_type: ACCESS_TOKEN, ...params })

  it('refuses offline_access when the exchanging client obtained the subject token: 403 access_denied', async () => {
    const { status, body } = await exchange('selfish', { subject_token: await user('erin', 'openid'), scope: 'openid offline_access' })
    expect(status).toBe(403)
    expect(body.error).toBe('access_denied')
    const without = await exchange('selfish', { subject_token: await user('erin', 'openid'), scope: 'openid' })
    expect(without.status).toBe(200)
    expect(without.body).not.toHaveProperty('refresh_token')
  })

  it('denies an exchange no policy applies to (403) and a scope the policy does not permit (invalid_scope)', async () => {
    const erin = await user('erin', 'openid')
    const noPolicy = await exchange('stranger', { subject_token: erin, scope: 'openid' })
    expect(noPolicy).toMatchObject({ status: 403, body: { error: 'access_denied', error_description: 'No applicable policies found' } })
    const wide = await exchange('rotator', { subject_token: erin, scope: 'storage.read:/atlas' })
    expect(wide).toMatchObject({ status: 400, body: { error: 'invalid_scope' } })
    const narrow = await exchange('rotator', { subject_token: erin, scope: 'storage.read:/cms/data' })
    expect(narrow).toMatchObject({ status: 200, body: { scope: 'storage.read:/cms/data' } })
  })

  it('uses the exchanging client\'s access-token lifetime, capped further by expires_in', async () => {
    const erin = await user('erin', 'openid')
    expect((await exchange('rotator', { subject_token: erin, scope: 'openid' })).body.expires_in).toBe(1200)
    expect((await exchange('rotator', { subject_token: erin, scope: 'openid', expires_in: '99999' })).body.expires_in).toBe(1200)
    expect((await exchange('rotator', { subject_token: erin, scope: 'openid', expires_in: '300' })).body.expires_in).toBe(300)
  })

  it('drops a scope denied by a user scope policy silently', async () => {
    const { status, body } = await exchange('rotator', { subject_token: await user('dana', 'openid'), scope: 'openid compute.read' })
    expect(status).toBe(200)
    expect(body.scope).toBe('openid')
    expect(decodeJwt(String(body.access_token)).scope).toBe('openid')
  })

  it('rotates refresh tokens when the client is so configured: the old RT stops working', async () => {
    const first = await exchange('rotator', { subject_token: await user('erin', 'openid'), scope: 'openid offline_access' })
    const rt1 = String(first.body.refresh_token)
    const r1 = await devIamTokenRequest(iam, 'rotator', { grant_type: 'refresh_token', refresh_token: rt1 })
    expect(r1.status).toBe(200)
    expect(r1.body.refresh_token).not.toBe(rt1)
    const again = await devIamTokenRequest(iam, 'rotator', { grant_type: 'refresh_token', refresh_token: rt1 })
    expect(again).toMatchObject({ status: 400, body: { error: 'invalid_grant' } })
    const r2 = await devIamTokenRequest(iam, 'rotator', { grant_type: 'refresh_token', refresh_token: String(r1.body.refresh_token) })
    expect(r2.status).toBe(200)
  })

  it('nests the previous act when an exchanged token is exchanged again', async () => {
    const once = await exchange('selfish', { subject_token: await user('erin', 'openid'), scope: 'openid' })
    const twice = await exchange('rotator', { subject_token: String(once.body.access_token), scope: 'openid' })
    expect(twice.status).toBe(200)
    expect(decodeJwt(String(twice.body.access_token)).act).toEqual({ sub: 'rotator', act: { sub: 'selfish' } })
  })
})
