import { EXP_SKEW_SECONDS } from '../../contract/revocation_exp.ts'
import { BrokerCallError, type BrokerClient } from './broker_client.ts'
import type { Manifest } from './render.ts'

export interface TeardownResult { revokedTokens: string[]; revokedCertificates: string[]; failures: string[] }

/**
 * Revokes everything a manifest lists: each daemon token by jti and each pilot enrolment credential as a pilot
 * group (`pilot-enrolment`, POST /v1/revocations), each certificate by serial (DELETE /v1/certificates/{serial}). Both are admin operations: the operator's IAM token must be
 * admitted by a policy rule granting `admin` (or the caller uses the bootstrap admin token). Keeps going
 * past a failure and reports every one, so a second run finishes what the first could not.
 */
export async function teardown(manifest: Pick<Manifest, 'tokens' | 'certificates' | 'template'>, broker: BrokerClient, reason = `teardown of ${manifest.template.name}`, now = Math.floor(Date.now() / 1000)): Promise<TeardownResult> {
  const r: TeardownResult = { revokedTokens: [], revokedCertificates: [], failures: [] }
  for (const t of manifest.tokens) {
    // The broker refuses a jti entry whose exp is more than its skew allowance past (400). Whether it is past is
    // the broker's to judge, not this machine's clock (a fast one made live tokens look expired, and they were
    // skipped): an exp that looks past here is not sent, and the broker holds the entry as long as its own audit
    // record of the token says (or, that record pruned, until every token it issued has expired).
    const exp = t.exp < now - EXP_SKEW_SECONDS ? undefined : t.exp
    try {
      // A pilot group by its enrolment, not its jobs: a SLURM job id names a job within one SLURM cluster only, so
      // `SITE:JOBID` would also cut off another cluster's pilots at the site. The entry stops the credential's
      // redemptions and its pilots' renewals, and its clause (ctb_enrolment) cuts the running pilots off at the
      // collector, which a jti entry for the credential does not. It must outlast the pilots' tokens, which the
      // credential's exp says nothing of: the broker decides how long to hold it (docs/pilots.md).
      if (t.kind === 'pilot_enrolment') await broker.revokePilotEnrolment(t.jti, reason)
      else await revokeDaemonToken(broker, t.jti, reason, exp)
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

/**
 * Revokes one daemon token by jti with its exp; refused as invalid (the broker found that exp past on its clock,
 * which may be ahead of this machine's), sent again without it: the broker then holds the entry as long as its
 * own record of the token says, which is never shorter. A teardown must not fail on a clock it cannot see.
 */
async function revokeDaemonToken(broker: BrokerClient, jti: string, reason: string, exp: number | undefined): Promise<void> {
  try {
    await broker.revokeJti(jti, reason, exp)
  } catch (err) {
    if (exp === undefined || !(err instanceof BrokerCallError) || err.status !== 400 || err.error !== 'invalid_request') throw err
    await broker.revokeJti(jti, reason)
  }
}
