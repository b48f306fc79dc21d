import { CLAIM_ENROLMENT } from '../contract/pilot.ts'

/**
 * `pilot-enrolment` revocations: value JTI (the enrolment credential's jti) revokes every pilot token of one
 * pilot group, whatever its site, job, node or issue time, and stops the credential's redemptions and its
 * pilots' renewals. A provisioning teardown revokes by it: a SLURM job id is unique within one SLURM cluster
 * only, so `SITE:JOBID` can name another cluster's pilots at the same site, and the enrolment names one
 * cluster's group alone. Pilot tokens carry it as `ctb_enrolment`: the clause is `ctb_enrolment =?= "JTI"`.
 */
export const PILOT_ENROLMENT_KIND = 'pilot-enrolment'

/** Every jti the broker makes (lib/jti.ts): 32 lowercase hex characters. */
const JTI = /^[0-9a-f]{32}$/

export function isEnrolmentId(value: string): boolean {
  return JTI.test(value)
}

/** The enrolment a token's claims name, or undefined for a token that is not a pilot's. */
export function pilotEnrolmentOf(claims: Readonly<Record<string, unknown>>): string | undefined {
  const e = claims[CLAIM_ENROLMENT]
  return typeof e === 'string' ? e : undefined
}

/** The SEC_TOKEN_REVOCATION_EXPR clause of one revoked enrolment; the value is hex (checked at revoke time). */
export function pilotEnrolmentClause(value: string, classAdString: (s: string) => string): string {
  if (!isEnrolmentId(value)) throw new TypeError('a pilot-enrolment revocation value is a jti')
  return `${CLAIM_ENROLMENT} =?= ${classAdString(value)}`
}
