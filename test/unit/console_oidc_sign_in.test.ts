import * as oidc from 'openid-client'
import { expect, it } from 'vitest'
import { oidcSignIn } from '../../src/console/oidc_sign_in.ts'
import { TemporarilyUnavailable } from '../../src/errors.ts'

/**
 * An IAM (or an issuer configured as one) whose discovery document names no authorization_endpoint can
 * verify tokens but cannot sign anyone in. GET /console/login then answered 500 server_error (openid-client's
 * OAUTH_MISSING_SERVER_METADATA, logged with a stack as an unhandled error): reproduced against a loopback
 * IAM serving only issuer, jwks_uri, token and introspection endpoints. It is IAM's trouble, not a bug of the
 * broker's: the console says so on its 503 page, as it does when discovery fails.
 */
it('refuses to start a sign-in at an IAM without an authorization endpoint as unavailable, not as a bug', async () => {
  const issuer = 'https://iam.example.org/'
  const config = new oidc.Configuration({ issuer, token_endpoint: `${issuer}token`, jwks_uri: `${issuer}jwks` }, 'broker', 'secret')
  const signIn = oidcSignIn({ configuration: async () => config }, issuer, 'https://broker.example.org/console/callback', () => 0)
  const err = await signIn.start().then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(TemporarilyUnavailable)
  expect((err as Error).message).toMatch(/authorization_endpoint/)
})

/**
 * RP-Initiated Logout 1.0 §2: post_logout_redirect_uri must be registered for the client, so the default
 * sits beside the one URI the operator already registers, the callback, also under a proxy's path prefix.
 */
it('sends IAM the sign-in page beside the redirect URI as post_logout_redirect_uri, or the configured one', async () => {
  const issuer = 'https://iam.example.org/'
  const config = new oidc.Configuration({ issuer, token_endpoint: `${issuer}token`, end_session_endpoint: `${issuer}logout?tenant=t` }, 'broker', 'secret')
  const prefixed = oidcSignIn({ configuration: async () => config }, issuer, 'https://web.example.org/broker/console/callback', () => 0)
  const url = new URL((await prefixed.endSession!('id.token.x'))!)
  expect(url.origin + url.pathname).toBe('https://iam.example.org/logout')
  expect(Object.fromEntries(url.searchParams)).toEqual({ tenant: 't', id_token_hint: 'id.token.x', post_logout_redirect_uri: 'https://web.example.org/broker/console/sign-in?signed-out', client_id: 'broker' })
  const configured = oidcSignIn({ configuration: async () => config }, issuer, 'https://broker.example.org/console/callback', () => 0, { postLogoutRedirectUri: 'https://broker.example.org/bye' })
  expect(new URL((await configured.endSession!('t'))!).searchParams.get('post_logout_redirect_uri')).toBe('https://broker.example.org/bye')
})
