import type { DevIamContext } from './dev_iam_context.ts'
import { clientAuthEndpoint, reply } from './endpoint_request.ts'

/**
 * RFC 7662 introspection at `path` (IAM's `/introspect`), client authentication required. Answers for the
 * access and refresh tokens this IAM still holds: active, iss, sub, client_id, aud, scope, exp, iat, jti,
 * token_type, `wlcg.groups` and (user tokens) username/preferred_username; anything else is
 * `{active: false}`. oidc-provider's own introspection refuses JWT access tokens, hence this route.
 * @see RFC 7662 §2; docs/iam-and-wlcg.md §1.5 "Introspection"
 */
export function introspectionMiddleware(dev: DevIamContext, path: string) {
  return clientAuthEndpoint(dev, path, (ctx, _req, rec) => {
    if (!rec) return reply(ctx, 200, { active: false })
    const body: Record<string, unknown> = {
      active: true, iss: dev.issuer, sub: rec.sub, client_id: rec.clientId, scope: rec.scopes.join(' '),
      exp: rec.exp, iat: rec.iat, expires_at: new Date(rec.exp * 1000).toISOString(),
    }
    if (rec.kind === 'access_token') {
      Object.assign(body, { jti: rec.jti, aud: rec.claims.aud, token_type: 'Bearer' })
      if (rec.claims['wlcg.groups']) body['wlcg.groups'] = rec.claims['wlcg.groups']
    } else {
      body.token_type = 'refresh_token'
    }
    if (rec.act) body.act = rec.act
    const user = rec.username !== undefined ? dev.users.get(rec.username) : undefined
    if (user) Object.assign(body, { user_id: user.username, username: user.username, preferred_username: user.username, groups: user.groups })
    reply(ctx, 200, body)
  })
}
