import { errors } from 'oidc-provider'
import { GRANT } from '../dev_iam_config.ts'
import { sameSecret } from '../endpoint_client_auth.ts'
import { issueRefreshToken, mintAccessToken } from '../mint_access_token.ts'
import type { DevIamGrant, TokenResponse } from './grant.ts'
import {
  applyUserScopePolicy, assertClientScopes, clientOf, COMMON_PARAMETERS, invalidGrant, REPEATABLE_PARAMETERS,
  requestedAudience, requestedLifetime, scopesOrClientDefault,
} from './grant_params.ts'

/**
 * DEVELOPMENT ONLY: the resource-owner password grant for the configured dev users, so tests and the demo
 * get USER tokens without a browser. IAM still lists `password` (deprecated); a production IAM user logs
 * in through the browser or the device flow instead.
 * @see RFC 6749 §4.3; docs/iam-and-wlcg.md §1.3
 */
export const passwordGrant: DevIamGrant = {
  grantType: GRANT.password,
  parameters: ['username', 'password', ...COMMON_PARAMETERS],
  repeatable: REPEATABLE_PARAMETERS,
  handler: (dev) => async (ctx) => {
    const params = ctx.oidc.params as Record<string, unknown>
    const { username, password } = params
    if (typeof username !== 'string' || username === '') throw new errors.InvalidRequest('missing required parameter \'username\'')
    if (typeof password !== 'string' || password === '') throw new errors.InvalidRequest('missing required parameter \'password\'')
    const user = dev.users.get(username)
    // Same answer for an unknown user and a wrong password (Spring: "Bad credentials").
    const ok = user !== undefined && sameSecret(user.password, password)
    if (!user || !ok) throw invalidGrant('Bad credentials')
    const client = clientOf(dev, ctx.oidc.client.clientId)
    const requested = scopesOrClientDefault(params, client)
    assertClientScopes(client, requested)
    const scopes = applyUserScopePolicy(user, requested)
    const audience = requestedAudience(params)
    const { token, record } = await mintAccessToken(dev, {
      client, user, scopes, audience, lifetime: requestedLifetime(params, client),
    })
    const body: TokenResponse = { access_token: token, token_type: 'Bearer', expires_in: record.exp - record.iat, scope: scopes.join(' ') }
    if (scopes.includes('offline_access') && client.grant_types.includes(GRANT.refreshToken)) {
      body.refresh_token = issueRefreshToken(dev, { sub: user.sub, username: user.username, clientId: client.client_id, scopes }, client)
    }
    ctx.body = body
  },
}
