import { errors } from 'oidc-provider'
import { GRANT } from '../dev_iam_config.ts'
import { decideExchange } from '../exchange_policy.ts'
import { issueRefreshToken, mintAccessToken } from '../mint_access_token.ts'
import { splitScope } from '../scopes.ts'
import type { DevIamGrant, TokenResponse } from './grant.ts'
import {
  accessDenied, applyUserScopePolicy, assertClientScopes, clientOf, COMMON_PARAMETERS, invalidGrant,
  REPEATABLE_PARAMETERS, requestedAudience, requestedLifetime,
} from './grant_params.ts'

const ISSUED_TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt'

/**
 * RFC 8693 token exchange with INDIGO IAM's semantics (TokenExchangeTokenGranter, IamOAuth2RequestFactory),
 * checked in IAM's order:
 * - `actor_token`/`want_composite` → invalid_request "Delegation not supported" (impersonation only);
 * - `scope` REQUIRED → invalid_request;
 * - `subject_token` must be an access token this IAM issued and still holds → else invalid_grant;
 *   `subject_token_type` and `requested_token_type` are not read;
 * - `offline_access` by the same client that obtained the subject token → 403 access_denied;
 * - exchange policy (no applicable policy → 403 access_denied; scope not permitted → invalid_scope);
 * - each scope allowed by both the subject's client and the exchanging client → else invalid_scope;
 * - user scope policies drop scopes silently;
 * - result: subject's `sub`, `act: {sub: <exchanging client>, act: <previous act>}`, the EXCHANGING
 *   client's lifetime, `aud` from resource/aud/audience, a refresh token only with `offline_access`.
 * @see RFC 8693 §2.1, §4.1; docs/iam-and-wlcg.md §1.4
 */
export const tokenExchangeGrant: DevIamGrant = {
  grantType: GRANT.tokenExchange,
  parameters: [
    'subject_token', 'subject_token_type', 'requested_token_type', 'actor_token', 'actor_token_type', 'want_composite',
    ...COMMON_PARAMETERS,
  ],
  repeatable: REPEATABLE_PARAMETERS,
  handler: (dev) => async (ctx) => {
    const params = ctx.oidc.params as Record<string, unknown>
    if (params.actor_token !== undefined || params.want_composite !== undefined) throw new errors.InvalidRequest('Delegation not supported')
    const requested = splitScope(params.scope)
    if (requested.length === 0) throw new errors.InvalidRequest('The scope parameter is required for a token exchange request!')
    const subjectToken = params.subject_token
    if (typeof subjectToken !== 'string' || subjectToken === '') throw new errors.InvalidRequest('missing required parameter \'subject_token\'')

    const now = dev.clock.now()
    const subject = dev.store.get(subjectToken, now)
    if (!subject || subject.kind !== 'access_token') throw invalidGrant('Invalid subject token: not found on database')

    const actor = clientOf(dev, ctx.oidc.client.clientId)
    if (actor.client_id === subject.clientId && requested.includes('offline_access')) {
      throw accessDenied('Token exchange not allowed: same client and offline_access requested')
    }
    const decision = decideExchange(dev.config.exchange_policies, subject.clientId, actor.client_id, requested)
    if (decision.decision === 'DENY') throw accessDenied(decision.message)
    if (decision.decision === 'INVALID_SCOPE') throw new errors.InvalidScope(`Scope exchange not allowed by policy: ${decision.scope}`, decision.scope)

    // Layer 1: both clients must be allowed every requested scope. The subject's client may have been
    // removed since; then nothing is allowed.
    const origin = dev.clients.get(subject.clientId)
    if (!origin) throw invalidGrant('Invalid subject token: client not found')
    assertClientScopes(origin, requested)
    assertClientScopes(actor, requested)

    const user = subject.username !== undefined ? dev.users.get(subject.username) : undefined
    if (subject.username !== undefined && !user) throw invalidGrant('Invalid subject token: user not found')
    const scopes = applyUserScopePolicy(user, requested)
    const act: Record<string, unknown> = { sub: actor.client_id, ...(subject.act ? { act: subject.act } : {}) }
    const { token, record } = await mintAccessToken(dev, {
      client: actor, ...(user ? { user } : { clientOnlySub: subject.sub }),
      scopes, audience: requestedAudience(params), lifetime: requestedLifetime(params, actor), act,
    })
    const body: TokenResponse = {
      access_token: token, token_type: 'Bearer', expires_in: record.exp - record.iat, scope: scopes.join(' '),
      issued_token_type: ISSUED_TOKEN_TYPE_JWT,
    }
    if (scopes.includes('offline_access') && actor.grant_types.includes(GRANT.refreshToken)) {
      body.refresh_token = issueRefreshToken(dev, {
        sub: record.sub, ...(user ? { username: user.username } : {}), clientId: actor.client_id, scopes, act,
      }, actor)
    }
    ctx.body = body
  },
}
