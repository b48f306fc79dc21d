import * as oidc from 'openid-client'
import { TemporarilyUnavailable } from '../errors.ts'
import type { IamDiscovery } from '../iam/discovery.ts'

/** Scopes the console asks IAM for: identity, and the groups the policy's admin rule matches on. */
export const CONSOLE_SCOPES = 'openid profile wlcg.groups'

/** The relying-party half of console sign-in at IAM (authorization code + PKCE), through openid-client. */
export interface ConsoleSignIn {
  /** Where to send the browser; the verifier and nonce stay on the server. */
  start(): Promise<{ url: string; codeVerifier: string; nonce: string; state: string }>
  /** Redeems the callback's code; returns IAM's access token, its expiry (epoch seconds) and the ID token, or throws. */
  finish(callbackParams: URLSearchParams, checks: { codeVerifier: string; nonce: string; state: string }): Promise<{ accessToken: string; expiresAt?: number; idToken?: string }>
  /**
   * Where to send the browser to end its session at IAM (OpenID Connect RP-Initiated Logout 1.0 §2), or
   * undefined when IAM advertises no end_session_endpoint. Throws when IAM cannot be asked.
   */
  endSession?(idToken: string): Promise<string | undefined>
}

/**
 * Sign-in at the trusted issuer `issuer`, as the broker's own IAM client (the client needs the
 * authorization_code grant and `redirectUri` registered at IAM). Discovery, client authentication and
 * timeouts are the IAM adapter's (IamDiscovery.configuration).
 * @see RFC 6749 §4.1; RFC 7636; OpenID Connect Core §3.1
 */
export function oidcSignIn(discovery: Pick<IamDiscovery, 'configuration'>, issuer: string, redirectUri: string, now: () => number, options: { postLogoutRedirectUri?: string } = {}): ConsoleSignIn {
  // Beside the callback (<base>/console/callback → <base>/console/sign-in?signed-out): registered at IAM with it.
  const postLogoutRedirectUri = options.postLogoutRedirectUri ?? defaultPostLogoutRedirectUri(redirectUri)
  return {
    async start() {
      const config = await discovery.configuration(issuer)
      // Without it IAM can verify tokens but sign nobody in: IAM's trouble (503 page), not a 500.
      if (typeof config.serverMetadata().authorization_endpoint !== 'string') {
        throw new TemporarilyUnavailable(`the discovery document of ${issuer} names no authorization_endpoint; console sign-in through IAM cannot start`)
      }
      const codeVerifier = oidc.randomPKCECodeVerifier()
      const nonce = oidc.randomNonce()
      const state = oidc.randomState()
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri, scope: CONSOLE_SCOPES, state, nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: 'S256',
      })
      return { url: url.href, codeVerifier, nonce, state }
    },
    async finish(callbackParams, checks) {
      const config = await discovery.configuration(issuer)
      // The registered redirect URI, not the URL the request arrived at (a proxy may have rewritten it).
      const callbackUrl = new URL(redirectUri)
      callbackUrl.search = callbackParams.toString()
      const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: checks.codeVerifier, expectedNonce: checks.nonce, expectedState: checks.state, idTokenExpected: true,
      })
      const expiresIn = tokens.expiresIn()
      return {
        accessToken: tokens.access_token, ...(expiresIn !== undefined ? { expiresAt: now() + expiresIn } : {}),
        ...(typeof tokens.id_token === 'string' ? { idToken: tokens.id_token } : {}),
      }
    },
    async endSession(idToken) {
      const config = await discovery.configuration(issuer)
      // §2.1: only an OP that advertises the endpoint supports RP-initiated logout.
      if (typeof config.serverMetadata().end_session_endpoint !== 'string') return undefined
      // id_token_hint (RECOMMENDED) names the session to end; client_id (added by openid-client) lets IAM
      // check post_logout_redirect_uri against this client's registration.
      return oidc.buildEndSessionUrl(config, { id_token_hint: idToken, post_logout_redirect_uri: postLogoutRedirectUri }).href
    },
  }
}

/** The console's signed-out page, beside the redirect URI: what IAM sends the browser back to after logout. */
export function defaultPostLogoutRedirectUri(redirectUri: string): string {
  return new URL('sign-in?signed-out', redirectUri).href
}
