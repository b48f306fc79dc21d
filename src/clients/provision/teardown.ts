import type { BrokerClient } from './broker_client.ts'
import type { Manifest } from './render.ts'

export interface TeardownResult { revokedTokens: string[]; revokedCertificates: string[]; failures: string[] }

/**
 * Revokes everything a manifest lists: each token by jti (POST /v1/revocations), each certificate by
 * serial (DELETE /v1/certificates/{serial}). Both are admin operations: the operator's IAM token must be
 * admitted by a policy rule granting `admin` (or the caller uses the bootstrap admin token). Keeps going
 * past a failure and reports every one, so a second run finishes what the first could not.
 */
export async function teardown(manifest: Pick<Manifest, 'tokens' | 'certificates' | 'template'>, broker: BrokerClient, reason = `teardown of ${manifest.template.name}`): Promise<TeardownResult> {
  const r: TeardownResult = { revokedTokens: [], revokedCertificates: [], failures: [] }
  for (const t of manifest.tokens) {
    try {
      // A credential's revocation must outlast its pilots' tokens, which its exp says nothing of: the broker
      // decides how long to hold it (from its log, else until all it issued has expired; docs/pilots.md).
      await broker.revokeJti(t.jti, reason, t.kind === 'pilot_enrolment' ? undefined : t.exp)
      r.revokedTokens.push(t.jti)
    } catch (err) {
      r.failures.push(`token ${t.jti} (${t.node}): ${(err as Error).message}`)
    }
  }
  for (const c of manifest.certificates) {
    try {
      await broker.revokeCertificate(c.serial, reason)
      r.revokedCertificates.push(c.serial)
    } catch (err) {
      r.failures.push(`certificate ${c.serial} (${c.node}): ${(err as Error).message}`)
    }
  }
  return r
}
