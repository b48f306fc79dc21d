/**
 * DEVELOPMENT ONLY: the OpenID Connect authorization code flow with PKCE (S256), so a browser can sign in
 * to the broker's console through the development IAM. The "login" is a page listing the configured test
 * users, each a button: no password is asked, since everything about this IAM is well known anyway. A real
 * INDIGO IAM has its own login page (password, federated identity) and consent screen instead.
 * oidc-provider's own authorization endpoint is not used: it needs persisted sessions and interactions,
 * while every other token of this IAM lives in the TokenStore.
 * @see RFC 6749 §4.1; RFC 7636 (PKCE); OpenID Connect Core §3.1
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Context, Next } from 'koa'
import { SignJWT } from 'jose'
import { GRANT, type DevIamClient } from './dev_iam_config.ts'
import type { DevIamContext } from './dev_iam_context.ts'
import { readForm, reply } from './endpoint_request.ts'
import { anyCovers } from './scopes.ts'
import type { DevIamGrant, TokenResponse } from './grants/grant.ts'
import { applyUserScopePolicy, clientOf, invalidGrant } from './grants/grant_params.ts'
import { mintAccessToken } from './mint_access_token.ts'

/** An authorization code is good for one redemption within this many seconds (RFC 6749 §4.1.2: short). */
const CODE_TTL_SECONDS = 60
/** Codes held at once; the oldest are dropped first. */
const MAX_CODES = 1000

export interface PendingCode {
  clientId: string
  redirectUri: string
  challenge: string
  username: string
  scopes: string[]
  nonce?: string
  exp: number
}

interface AuthorizeParams {
  client: DevIamClient
  redirectUri: string
  state: string
  scope: string
  challenge: string
  nonce?: string
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!)

/** Codes issued by the login page and not yet redeemed, by code. */
export type PendingCodes = Map<string, PendingCode>

/** Koa middleware for the authorization endpoint at `path`: GET shows the login page, POST picks a user. */
export function authorizeMiddleware(dev: DevIamContext, path: string) {
  const codes = dev.codes

  function validate(p: URLSearchParams): AuthorizeParams | string {
    const one = (k: string) => { const v = p.getAll(k); return v.length === 1 ? v[0]! : undefined }
    const client = dev.clients.get(one('client_id') ?? '')
    if (!client || !client.grant_types.includes(GRANT.authorizationCode)) return 'unknown client, or the client may not use the authorization code flow'
    const redirectUri = one('redirect_uri')
    if (!redirectUri || !client.redirect_uris.includes(redirectUri)) return 'redirect_uri is not registered for this client'
    if (one('response_type') !== 'code') return 'response_type must be code'
    const challenge = one('code_challenge')
    if (!challenge || !/^[A-Za-z0-9_-]{43}$/.test(challenge) || one('code_challenge_method') !== 'S256') return 'PKCE is required: code_challenge with code_challenge_method S256'
    const state = one('state')
    if (!state) return 'state is required'
    const nonce = one('nonce')
    return { client, redirectUri, state, scope: one('scope') ?? 'openid', challenge, ...(nonce ? { nonce } : {}) }
  }

  function loginPage(ctx: Context, a: AuthorizeParams, query: URLSearchParams): void {
    const hidden = [...query].filter(([k]) => k !== 'username').map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`).join('')
    const users = [...dev.users.values()].map((u) =>
      `<li><button type="submit" name="username" value="${esc(u.username)}">${esc(u.username)}</button> ${esc(u.name ?? '')} <small>${esc(u.groups.join(', '))}</small></li>`).join('')
    ctx.status = 200
    ctx.set('Content-Type', 'text/html; charset=utf-8')
    ctx.set('Cache-Control', 'no-store')
    // The form posts here, and its answer redirects to the client: both must be allowed form targets.
    ctx.set('Content-Security-Policy', `default-src 'none'; form-action 'self' ${new URL(a.redirectUri).origin}; frame-ancestors 'none'; base-uri 'none'`)
    ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Development IAM sign-in</title></head><body>
<h1>Development IAM: choose a test user</h1>
<p><strong>Development only.</strong> No password is asked: this IAM's users and secrets are well known. Signing in to ${esc(a.client.client_id)}.</p>
<form method="post" action="${esc(path)}">${hidden}<ul>${users}</ul></form></body></html>`
  }

  async function authorize(ctx: Context): Promise<void> {
    const params = ctx.method === 'POST' ? await readForm(ctx) : new URLSearchParams(ctx.querystring)
    if (!params) return reply(ctx, 400, { error: 'invalid_request', error_description: 'expected an application/x-www-form-urlencoded body' })
    const a = validate(params)
    if (typeof a === 'string') {
      // Before the redirect URI is trusted, errors are shown here, never sent to it (RFC 6749 §4.1.2.1).
      ctx.status = 400
      ctx.set('Content-Type', 'text/plain; charset=utf-8')
      ctx.body = `authorization request refused: ${a}\n`
      return
    }
    if (ctx.method === 'GET') return loginPage(ctx, a, params)
    const user = dev.users.get(params.get('username') ?? '')
    if (!user) return loginPage(ctx, a, params)
    const scopes = applyUserScopePolicy(user, a.scope.split(' ').filter((s) => s !== '' && anyCovers(a.client.scopes, s)))
    const code = randomBytes(32).toString('base64url')
    if (codes.size >= MAX_CODES) codes.delete(codes.keys().next().value!)
    codes.set(code, {
      clientId: a.client.client_id, redirectUri: a.redirectUri, challenge: a.challenge, username: user.username, scopes,
      exp: dev.clock.now() + CODE_TTL_SECONDS, ...(a.nonce ? { nonce: a.nonce } : {}),
    })
    const to = new URL(a.redirectUri)
    to.searchParams.set('code', code)
    to.searchParams.set('state', a.state)
    to.searchParams.set('iss', dev.issuer)
    ctx.status = 303
    ctx.set('Cache-Control', 'no-store')
    ctx.redirect(to.href)
  }

  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.path === path && (ctx.method === 'GET' || ctx.method === 'POST')) return authorize(ctx)
    return next()
  }
}

/**
 * The `authorization_code` grant at the token endpoint (oidc-provider authenticates the client and parses
 * the form): single-use code, same client and redirect_uri, PKCE S256; answers an access token in the
 * WLCG profile (audience: the IAM's default) and, for scope openid, an ID token.
 */
export const authorizationCodeGrant: DevIamGrant = {
  grantType: GRANT.authorizationCode,
  parameters: ['code', 'redirect_uri', 'code_verifier'],
  repeatable: [],
  handler: (dev) => async (ctx) => {
    const params = ctx.oidc.params as Record<string, unknown>
    const code = typeof params.code === 'string' ? params.code : ''
    const pending = dev.codes.get(code)
    // Single use: gone whether or not the rest checks out (RFC 6749 §4.1.2).
    dev.codes.delete(code)
    const client = clientOf(dev, ctx.oidc.client.clientId)
    if (!pending || pending.exp < dev.clock.now() || pending.clientId !== client.client_id || pending.redirectUri !== params.redirect_uri) {
      throw invalidGrant('the authorization code is invalid, expired, used, or issued to another client or redirect_uri')
    }
    const verifier = typeof params.code_verifier === 'string' ? params.code_verifier : ''
    if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || createHash('sha256').update(verifier).digest('base64url') !== pending.challenge) {
      throw invalidGrant('PKCE verification failed')
    }
    const user = dev.users.get(pending.username)!
    const { token, record } = await mintAccessToken(dev, { client, user, scopes: pending.scopes, audience: [], lifetime: client.access_token_lifetime })
    const body: TokenResponse & { id_token?: string } = { access_token: token, token_type: 'Bearer', expires_in: record.exp - record.iat, scope: pending.scopes.join(' ') }
    if (pending.scopes.includes('openid')) {
      body.id_token = await new SignJWT({ ...(pending.nonce ? { nonce: pending.nonce } : {}), auth_time: record.iat, preferred_username: user.username })
        .setProtectedHeader({ alg: 'RS256', kid: dev.kid })
        .setIssuer(dev.issuer).setSubject(user.sub).setAudience(client.client_id)
        .setIssuedAt(record.iat).setExpirationTime(record.exp)
        .sign(dev.signingKey)
    }
    ctx.body = body
  },
}
