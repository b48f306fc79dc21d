/**
 * Request parsing shared by the development IAM's grants, mirroring IamOAuth2RequestFactory and the
 * IAM scope checks (docs/iam-and-wlcg.md §1.4). Errors are oidc-provider's, so its token endpoint renders them.
 */
import { errors } from 'oidc-provider'
import type { DevIamClient, DevIamUser } from '../dev_iam_config.ts'
import type { DevIamContext } from '../dev_iam_context.ts'
import { anyCovers, splitScope } from '../scopes.ts'

/** Parameters every grant accepts besides its own: IAM reads these on any token request. */
export const COMMON_PARAMETERS = ['scope', 'audience', 'aud', 'resource', 'expires_in'] as const
/** Repeatable parameters (RFC 8693 §2.1 lets audience and resource repeat). */
export const REPEATABLE_PARAMETERS = ['audience', 'resource'] as const

type Params = Record<string, unknown>

function values(v: unknown): string[] {
  if (typeof v === 'string') return [v]
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string')
  return []
}

/**
 * The requested audiences: the first non-empty of `resource`, `aud`, `audience` (IAM's order), split on
 * spaces. `resource` values must be absolute URIs without query or fragment (RFC 8707 §2).
 */
export function requestedAudience(params: Params): string[] {
  for (const name of ['resource', 'aud', 'audience'] as const) {
    const list = values(params[name]).flatMap((v) => v.split(' ')).filter((v) => v.length > 0)
    if (list.length === 0) continue
    if (name === 'resource') {
      for (const r of list) {
        let u: URL | undefined
        try { u = new URL(r) } catch { u = undefined }
        if (!u || u.search || u.hash || r.includes('#') || r.includes('?')) {
          throw new errors.InvalidTarget('resource must be an absolute URI without query or fragment')
        }
      }
    }
    return [...new Set(list)]
  }
  return []
}

/** The access-token lifetime: the client's setting, shortened by an `expires_in` request parameter (IAM ≥ 1.13). */
export function requestedLifetime(params: Params, client: DevIamClient): number {
  const raw = params.expires_in
  if (raw === undefined || raw === '') return client.access_token_lifetime
  if (typeof raw !== 'string' || !/^[1-9][0-9]{0,9}$/.test(raw)) throw new errors.InvalidRequest('expires_in must be a positive integer')
  return Math.min(Number(raw), client.access_token_lifetime)
}

/** Every requested scope must be covered by the client's registered scopes; otherwise `invalid_scope`. */
export function assertClientScopes(client: DevIamClient, scopes: readonly string[]): void {
  for (const s of scopes) {
    if (!anyCovers(client.scopes, s)) throw new errors.InvalidScope(`Invalid scope: ${s}`, s)
  }
}

/** Requested scopes, or (scope omitted) every non-parametric registered scope except offline_access, as IAM's request factory defaults. */
export function scopesOrClientDefault(params: Params, client: DevIamClient): string[] {
  const requested = splitScope(params.scope)
  if (requested.length > 0) return requested
  return client.scopes.filter((s) => s !== 'offline_access' && !s.includes(':'))
}

/** IAM user scope policies filter user-bound tokens SILENTLY (§1.4 layer 3): denied scopes just vanish. */
export function applyUserScopePolicy(user: DevIamUser | undefined, scopes: readonly string[]): string[] {
  if (!user) return [...scopes]
  return scopes.filter((s) => !anyCovers(user.denied_scopes, s))
}

/** The development IAM client for the client oidc-provider authenticated. */
export function clientOf(ctx: DevIamContext, clientId: string): DevIamClient {
  const c = ctx.clients.get(clientId)
  // oidc-provider only authenticates clients it got from us, so a miss is a programming error.
  if (!c) throw new TypeError(`client ${clientId} is not configured`)
  return c
}

/** IAM answers some refusals with 403 access_denied (Spring's OAuth2AccessDeniedException). */
export function accessDenied(description: string): errors.OIDCProviderError {
  const err = new errors.AccessDenied(description)
  Object.assign(err, { status: 403, statusCode: 403 })
  return err
}

/** invalid_grant with a description (oidc-provider's InvalidGrant has a fixed one). */
export function invalidGrant(description: string): errors.OIDCProviderError {
  return new errors.CustomOIDCProviderError('invalid_grant', description)
}
