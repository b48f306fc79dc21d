import { errors } from 'oidc-provider'
import { GRANT } from '../dev_iam_config.ts'
import { issueRefreshToken, mintAccessToken } from '../mint_access_token.ts'
import { anyCovers, splitScope } from '../scopes.ts'
import type { DevIamGrant, TokenResponse } from './grant.ts'
import {
  applyUserScopePolicy, clientOf, COMMON_PARAMETERS, invalidGrant, REPEATABLE_PARAMETERS, requestedAudience, requestedLifetime,
} from './grant_params.ts'

/**
 * refresh_token: a new access token for the RT's subject, with the RT's scopes or a narrower `scope`,
 * and `audience` from the refresh request (else the default audience: IAM's WLCG "any"), as IAM does. With the client's
 * `rotate_refresh_tokens`, the RT is single-use and a new one is returned (IAM #707); otherwise the
 * same RT comes back.
 * @see RFC 6749 §6; docs/iam-and-wlcg.md §1.4 "Refresh tokens"
 */
export const refreshTokenGrant: DevIamGrant = {
  grantType: GRANT.refreshToken,
  parameters: ['refresh_token', ...COMMON_PARAMETERS],
  repeatable: REPEATABLE_PARAMETERS,
  handler: (dev) => async (ctx) => {
    const params = ctx.oidc.params as Record<string, unknown>
    const rt = params.refresh_token
    if (typeof rt !== 'string' || rt === '') throw new errors.InvalidRequest('missing required parameter \'refresh_token\'')
    const client = clientOf(dev, ctx.oidc.client.clientId)
    const held = dev.store.get(rt, dev.clock.now())
    if (!held || held.kind !== 'refresh_token') throw invalidGrant('Invalid refresh token')
    if (held.clientId !== client.client_id) throw invalidGrant('Client ID does not match refresh token')

    const requested = splitScope(params.scope)
    for (const s of requested) {
      if (!anyCovers(held.scopes, s)) throw new errors.InvalidScope(`Up-scoping is not allowed: ${s}`, s)
    }
    const user = held.username !== undefined ? dev.users.get(held.username) : undefined
    if (held.username !== undefined && !user) throw invalidGrant('Invalid refresh token: user not found')
    const scopes = applyUserScopePolicy(user, requested.length > 0 ? requested : held.scopes)
    const { token, record } = await mintAccessToken(dev, {
      client, ...(user ? { user } : { clientOnlySub: held.sub }), scopes,
      audience: requestedAudience(params), lifetime: requestedLifetime(params, client), ...(held.act ? { act: held.act } : {}),
    })
    let refreshToken = rt
    if (client.rotate_refresh_tokens) {
      dev.store.delete(rt)
      const { kind: _kind, iat: _iat, exp: _exp, ...rest } = held
      refreshToken = issueRefreshToken(dev, rest, client)
    }
    const body: TokenResponse = {
      access_token: token, token_type: 'Bearer', expires_in: record.exp - record.iat, scope: scopes.join(' '), refresh_token: refreshToken,
    }
    ctx.body = body
  },
}
