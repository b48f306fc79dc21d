import type { RetentionFloor } from '../audit/retention.ts'
import type { RevocationStore } from '../revocation/revocation.ts'

/**
 * The retention floor of a broker with a pool CA. Its CRL is built from the `certificate.revoked` and
 * `certificate.issued` records: pruned while their certificate is still listed, a revoked serial would
 * drop off the CRL and the certificate be good again (fail open). A certificate is listed until
 * `ca.crl_lifetime` after its notAfter, and lives at most the longest lifetime the broker ever granted,
 * which can exceed today's `ca.max_lifetime` once an admin has lowered it (IssuanceHorizons); so records
 * younger than the sum of the two stay, whatever `audit.retention_days` says.
 */
export function certificateRetentionFloor(store: Pick<RevocationStore, 'issuanceHorizon'>, ca: { maxLifetime: number; crlLifetime: number }): RetentionFloor {
  return async () => Math.max(ca.maxLifetime, (await store.issuanceHorizon()).certificate.lifetime) + ca.crlLifetime
}
