// Browser sign-in through the development IAM: the authorization code flow with PKCE, driven by
// openid-client as a relying party would, the login page answered as a browser would (a form POST).
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose'
import * as oidc from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultDevIamConfig } from '../../src/dev_iam/dev_iam_config.ts'
import { startDevIam, type RunningDevIam } from '../../src/dev_iam/start_dev_iam.ts'

const REDIRECT = 'https://localhost:9/console/callback'

describe('development IAM: authorization code with PKCE', () => {
  let iam: RunningDevIam
  let rp: oidc.Configuration

  beforeAll(async () => {
    const config = defaultDevIamConfig()
    config.clients.push({ client_id: 'console', client_secret: 'console-secret', grant_types: ['authorization_code'], scopes: ['openid', 'profile', 'wlcg.groups'], redirect_uris: [REDIRECT] })
    iam = await startDevIam({ port: 0, config })
    rp = await oidc.discovery(new URL(iam.discoveryUrl), 'console', undefined, oidc.ClientSecretBasic('console-secret'), { execute: [oidc.allowInsecureRequests] })
  })
  afterAll(async () => { await iam?.close() })

  /** Opens the login page, picks `username`, and returns where the IAM redirects the browser. */
  async function signIn(username: string, checks: { verifier: string; state: string; nonce: string }): Promise<{ page: string; location: URL }> {
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT, scope: 'openid profile wlcg.groups', state: checks.state, nonce: checks.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(checks.verifier), code_challenge_method: 'S256',
    })
    const page = await (await fetch(url)).text()
    const form = new URLSearchParams([...url.searchParams, ['username', username]])
    const res = await fetch(new URL('/authorize', iam.issuer), { method: 'POST', body: form, redirect: 'manual' })
    expect(res.status).toBe(303)
    return { page, location: new URL(res.headers.get('location')!) }
  }

  it('advertises the code flow with S256 PKCE', async () => {
    const meta = rp.serverMetadata()
    expect(meta.authorization_endpoint).toBe(`${iam.issuer}authorize`)
    expect(meta.code_challenge_methods_supported).toContain('S256')
  })

  it('lists the test users, then redeems the code once for an access token and an ID token', async () => {
    const checks = { verifier: oidc.randomPKCECodeVerifier(), state: oidc.randomState(), nonce: oidc.randomNonce() }
    const { page, location } = await signIn('alice', checks)
    expect(page).toContain('Development only')
    expect(page).toMatch(/value="bob"/)
    expect(location.origin + location.pathname).toBe(REDIRECT)
    expect(location.searchParams.get('state')).toBe(checks.state)
    const tokens = await oidc.authorizationCodeGrant(rp, location, { pkceCodeVerifier: checks.verifier, expectedState: checks.state, expectedNonce: checks.nonce })
    const jwks = createRemoteJWKSet(new URL(iam.jwksUri))
    const { payload: id } = await jwtVerify(tokens.id_token!, jwks, { issuer: iam.issuer, audience: 'console' })
    expect(id.nonce).toBe(checks.nonce)
    expect(id.sub).toBe(iam.config.users.find((u) => u.username === 'alice')!.sub)
    const at = decodeJwt(tokens.access_token)
    expect(at['wlcg.groups']).toEqual(['/cms', '/ctb-admins', '/htc/users'])
    expect(at.client_id).toBe('console')
    // The same code again is refused (single use).
    await expect(oidc.authorizationCodeGrant(rp, location, { pkceCodeVerifier: checks.verifier, expectedState: checks.state, expectedNonce: checks.nonce }))
      .rejects.toMatchObject({ error: 'invalid_grant' })
  })

  it('refuses a code redeemed with the wrong PKCE verifier', async () => {
    const checks = { verifier: oidc.randomPKCECodeVerifier(), state: oidc.randomState(), nonce: oidc.randomNonce() }
    const { location } = await signIn('bob', checks)
    await expect(oidc.authorizationCodeGrant(rp, location, { pkceCodeVerifier: oidc.randomPKCECodeVerifier(), expectedState: checks.state }))
      .rejects.toMatchObject({ error: 'invalid_grant', error_description: 'PKCE verification failed' })
  })

  it('refuses an unregistered redirect_uri and a request without PKCE on its own page', async () => {
    const base = { response_type: 'code', client_id: 'console', state: 's', scope: 'openid' }
    const evil = await fetch(`${iam.issuer}authorize?${new URLSearchParams({ ...base, redirect_uri: 'https://evil.example/cb', code_challenge: 'a'.repeat(43), code_challenge_method: 'S256' })}`, { redirect: 'manual' })
    expect(evil.status).toBe(400)
    expect(await evil.text()).toMatch(/redirect_uri is not registered/)
    const plain = await fetch(`${iam.issuer}authorize?${new URLSearchParams({ ...base, redirect_uri: REDIRECT })}`, { redirect: 'manual' })
    expect(plain.status).toBe(400)
    expect(await plain.text()).toMatch(/PKCE is required/)
  })
})
