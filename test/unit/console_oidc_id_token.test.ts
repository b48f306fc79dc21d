import { generateKeyPair, SignJWT } from 'jose'
import * as oidc from 'openid-client'
import { beforeAll, describe, expect, it } from 'vitest'
import { oidcSignIn } from '../../src/console/oidc_sign_in.ts'

/**
 * The console's callback signs in on IAM's access token, but only once the ID token of the same answer
 * names this sign-in: OpenID Connect Core §3.1.3.7. Each case hands back an ID token broken in one claim a
 * mix-up or a replay would break (another issuer, another client, another client as azp, another sign-in's
 * nonce, expired) and expects the sign-in to fail; the expected values come from the spec, not the code.
 */
const ISSUER = 'https://iam.example.org/'
const CLIENT = 'ctb-console'
const REDIRECT = 'https://broker.example.org/console/callback'
// openid-client checks iat and exp against the system clock.
const NOW = Math.floor(Date.now() / 1000)

let key: CryptoKey
beforeAll(async () => { key = (await generateKeyPair('RS256')).privateKey })

async function idToken(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT({ iss: ISSUER, aud: CLIENT, sub: 'alice', nonce: 'nonce-1', iat: NOW - 10, exp: NOW + 300, ...claims })
    .setProtectedHeader({ alg: 'RS256' }).sign(key)
}

/** IAM's token endpoint, answering the code with `id_token`; nothing leaves the process. */
function signInAnswering(id_token: string) {
  const config = new oidc.Configuration({ issuer: ISSUER, authorization_endpoint: `${ISSUER}authorize`, token_endpoint: `${ISSUER}token`, jwks_uri: `${ISSUER}jwks` }, CLIENT, 'secret')
  config[oidc.customFetch] = async () => Response.json({ access_token: 'at', token_type: 'Bearer', expires_in: 600, id_token })
  config.timeout = 5
  return oidcSignIn({ configuration: async () => config }, ISSUER, REDIRECT, () => NOW)
}

const finish = async (token: string) => {
  const signIn = signInAnswering(token)
  return signIn.finish(new URLSearchParams({ code: 'c', state: 'state-1' }), { codeVerifier: 'v'.repeat(43), nonce: 'nonce-1', state: 'state-1' })
}

describe('console sign-in: the ID token must be this sign-in\'s', () => {
  it('accepts the ID token of this sign-in (the control: each refusal below is for its one claim)', async () => {
    const signedIn = await finish(await idToken({}))
    expect(signedIn.accessToken).toBe('at')
    // IAM's expires_in (600) as openid-client counts it down from the answer: a second may pass meanwhile.
    expect(signedIn.expiresAt).toBeGreaterThanOrEqual(NOW + 599)
    expect(signedIn.expiresAt).toBeLessThanOrEqual(NOW + 600)
  })

  it.each([
    ['another issuer (mix-up between IAMs)', { iss: 'https://other-iam.example.org/' }, 'OAUTH_JWT_CLAIM_COMPARISON_FAILED'],
    ['another client as audience', { aud: 'someone-else' }, 'OAUTH_JWT_CLAIM_COMPARISON_FAILED'],
    ['several audiences and azp naming another client', { aud: [CLIENT, 'someone-else'], azp: 'someone-else' }, 'OAUTH_JWT_CLAIM_COMPARISON_FAILED'],
    ['several audiences and no azp', { aud: [CLIENT, 'someone-else'] }, 'OAUTH_JWT_CLAIM_COMPARISON_FAILED'],
    ['another sign-in\'s nonce', { nonce: 'nonce-2' }, 'OAUTH_JWT_CLAIM_COMPARISON_FAILED'],
    ['no nonce', { nonce: undefined }, 'OAUTH_INVALID_RESPONSE'],
    ['an expired one', { iat: NOW - 7200, exp: NOW - 3600 }, 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED'],
  ] as const)('refuses %s', async (_name, claims, code) => {
    const err = await finish(await idToken(claims)).then(() => undefined, (e: unknown) => e as Error & { code?: string })
    expect(err).toBeInstanceOf(Error)
    // The code of the ID token check that fails (openid-client), not some other failure on the way.
    expect(err!.code).toBe(code)
  })
})
