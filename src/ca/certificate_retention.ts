import type { RetentionFloor } from '../audit/retention.ts'
import type { RevocationStore } from '../revocation/revocation.ts'

/**
 * The retention floor of a store a pool CA has signed certificates into. Its CRL is built from the
 * `certificate.revoked` and `certificate.issued` records: pruned while their certificate is still listed,
 * a revoked serial would drop off the CRL and the certificate be good again (fail open). A certificate is
 * listed until `ca.crl_lifetime` after its notAfter, and lives at most the longest lifetime the broker
 * ever granted, which can exceed today's `ca.max_lifetime` once an admin has lowered it
 * (IssuanceHorizons); so records younger than the sum of the two stay, whatever `audit.retention_days`
 * says. Decided by the store, not by whether this host has the CA key: a prune run from a host without it
 * (or by a user who cannot read it) must not drop what the serving replicas' CRL lists. Nothing is held
 * back once every certificate ever signed is past its notAfter and a CRL lifetime.
 */
export function certificateRetentionFloor(store: Pick<RevocationStore, 'issuanceHorizon'>, ca: { maxLifetime: number; crlLifetime: number }, now: () => number): RetentionFloor {
  return async () => {
    const { certificate } = await store.issuanceHorizon()
    if (certificate.exp + ca.crlLifetime <= now()) return 0
    return Math.max(ca.maxLifetime, certificate.lifetime) + ca.crlLifetime
  }
}
