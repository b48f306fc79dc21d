import { tokenRevocation } from 'openid-client'
import type { IamDiscovery } from '../iam/discovery.ts'
import type { Logger } from '../lib/logger.ts'

/** Revokes a refresh token at its IAM; best effort, never throws. */
export type RefreshTokenRevoker = (t: { issuer: string; refreshToken: string; user: string; provider: string; what: string }) => Promise<void>

/**
 * RFC 7009 revocation of a refresh token that no credential row holds any more (replaced, revoked, or
 * lost a race to the row), so it does not outlive its row at IAM. Best effort: IAM unreachable or
 * refusing is logged (`what` says whose token it was), never raised, since the row is already as it
 * must be. The broker's client authentication comes with the issuer's configuration.
 * @see https://www.rfc-editor.org/rfc/rfc7009.html#section-2
 */
export function refreshTokenRevoker(deps: { discovery: IamDiscovery; log: Logger }): RefreshTokenRevoker {
  return async ({ issuer, refreshToken, user, provider, what }) => {
    try {
      const configuration = await deps.discovery.configuration(issuer)
      await tokenRevocation(configuration, refreshToken, { token_type_hint: 'refresh_token' })
    } catch (err) {
      deps.log.warn(`could not revoke the refresh token of ${what} at IAM`, { issuer, user, provider, err: err instanceof Error ? err : undefined })
    }
  }
}
