import { randomBytes, randomUUID } from 'node:crypto'
import { SignJWT } from 'jose'
import type { DevIamClient, DevIamUser } from './dev_iam_config.ts'
import type { DevIamContext } from './dev_iam_context.ts'
import { resolveWlcgGroups } from './scopes.ts'
import type { AccessTokenRecord, RefreshTokenRecord } from './token_store.ts'

/** WLCG profile: `aud` when none was requested (docs/iam-and-wlcg.md §1.5). */
export const WLCG_ANY_AUDIENCE = 'https://wlcg.cern.ch/jwt/v1/any'

export interface MintRequest {
  client: DevIamClient
  /** The user the token speaks for; absent for client-only tokens. */
  user?: DevIamUser
  /** `sub` of a client-only token: the client id, or the subject token's `sub` after an exchange. */
  clientOnlySub?: string
  scopes: string[]
  /** Requested audiences (already split); empty means the context's default (IAM: the WLCG "any" audience). */
  audience: string[]
  lifetime: number
  act?: Record<string, unknown>
}

export interface MintedAccessToken {
  token: string
  record: AccessTokenRecord
}

/**
 * Builds and signs an access token the way IAM's WLCG profile does (WLCGProfileAccessTokenBuilder):
 * iss, sub, aud, iat, nbf (= iat), exp, jti (UUID), client_id, scope (space-joined), `wlcg.ver: "1.0"`,
 * `wlcg.groups` only when a group scope was granted, authn info when enabled and scoped, `act` after an
 * exchange. RS256 with the provider's key. The token is stored so exchange and introspection can find it.
 * @see docs/iam-and-wlcg.md §1.5 and §2.1
 */
export async function mintAccessToken(ctx: DevIamContext, req: MintRequest): Promise<MintedAccessToken> {
  const iat = ctx.clock.now()
  const exp = iat + req.lifetime
  const jti = randomUUID()
  const sub = req.user?.sub ?? req.clientOnlySub ?? req.client.client_id
  const aud: string | string[] = req.audience.length === 0 ? ctx.defaultAudience : req.audience.length === 1 ? req.audience[0]! : req.audience
  const claims: Record<string, unknown> = {
    iss: ctx.issuer, sub, aud, iat, nbf: iat, exp, jti, client_id: req.client.client_id,
  }
  if (req.scopes.length > 0) claims.scope = req.scopes.join(' ')
  claims['wlcg.ver'] = '1.0'
  if (req.user) {
    const groups = resolveWlcgGroups(req.scopes, req.user.groups)
    if (groups && groups.length > 0) claims['wlcg.groups'] = groups
    if (ctx.config.include_authn_info) {
      if (req.scopes.includes('profile')) {
        claims.preferred_username = req.user.username
        if (req.user.name) claims.name = req.user.name
      }
      if (req.scopes.includes('email') && req.user.email) claims.email = req.user.email
    }
  }
  if (req.act) claims.act = req.act
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: ctx.kid }).sign(ctx.signingKey)
  const record: AccessTokenRecord = {
    kind: 'access_token', jti, sub, clientId: req.client.client_id, scopes: req.scopes, iat, exp, claims,
    ...(req.user ? { username: req.user.username } : {}),
    ...(req.act ? { act: req.act } : {}),
  }
  ctx.store.put(token, record, iat)
  return { token, record }
}

/** An opaque refresh token (IAM's are JWTs signed with `alg: none`; nothing reads their contents, so opaque is enough here). */
export function issueRefreshToken(ctx: DevIamContext, req: Omit<RefreshTokenRecord, 'kind' | 'iat' | 'exp'>, client: DevIamClient): string {
  const iat = ctx.clock.now()
  const token = randomBytes(32).toString('base64url')
  ctx.store.put(token, { ...req, kind: 'refresh_token', iat, exp: iat + client.refresh_token_lifetime }, iat)
  return token
}
