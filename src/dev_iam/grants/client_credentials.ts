import { GRANT } from '../dev_iam_config.ts'
import { issueRefreshToken, mintAccessToken } from '../mint_access_token.ts'
import type { DevIamGrant, TokenResponse } from './grant.ts'
import {
  assertClientScopes, clientOf, COMMON_PARAMETERS, REPEATABLE_PARAMETERS, requestedAudience, requestedLifetime, scopesOrClientDefault,
} from './grant_params.ts'

/**
 * client_credentials as IAM does it: a client-only token whose `sub` is the client id. IAM stores an
 * unused RT when `offline_access` is asked (#847); here one is issued only if the client may refresh.
 * @see RFC 6749 §4.4; docs/iam-and-wlcg.md §1.5
 */
export const clientCredentialsGrant: DevIamGrant = {
  grantType: GRANT.clientCredentials,
  parameters: COMMON_PARAMETERS,
  repeatable: REPEATABLE_PARAMETERS,
  handler: (dev) => async (ctx) => {
    const params = ctx.oidc.params as Record<string, unknown>
    const client = clientOf(dev, ctx.oidc.client.clientId)
    const scopes = scopesOrClientDefault(params, client)
    assertClientScopes(client, scopes)
    const audience = requestedAudience(params)
    const { token, record } = await mintAccessToken(dev, {
      client, scopes, audience, lifetime: requestedLifetime(params, client),
    })
    const body: TokenResponse = { access_token: token, token_type: 'Bearer', expires_in: record.exp - record.iat, scope: scopes.join(' ') }
    if (scopes.includes('offline_access') && client.grant_types.includes(GRANT.refreshToken)) {
      body.refresh_token = issueRefreshToken(dev, { sub: record.sub, clientId: client.client_id, scopes }, client)
    }
    ctx.body = body
  },
}
