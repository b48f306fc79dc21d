import { CLAIM_SLURM_JOB } from '../contract/pilot.ts'
import { CLAIM_SITE } from './revocation.ts'

/**
 * `pilot-job` revocations: value `SITE:JOBID` revokes every pilot token of one SLURM job at one site
 * (whatever its node or issue time) and stops its renewal. A job id is unique per site only, so both parts
 * are matched: `ctb_site =?= "SITE" && ctb_slurm_job =?= "JOBID"`.
 */
export const PILOT_JOB_KIND = 'pilot-job'

const VALUE = /^([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):([0-9]{1,20}(?:_[0-9]{1,10})?)$/

/** Splits `SITE:JOBID`, or undefined when it is not one. */
export function parsePilotJob(value: string): { site: string; job: string } | undefined {
  const m = VALUE.exec(value)
  return m ? { site: m[1]!, job: m[2]! } : undefined
}

/** The key a token's claims fall under, or undefined for a token that is not a pilot's. */
export function pilotJobKeyOf(claims: Readonly<Record<string, unknown>>): string | undefined {
  const site = claims[CLAIM_SITE]
  const job = claims[CLAIM_SLURM_JOB]
  return typeof site === 'string' && typeof job === 'string' ? `${site}:${job}` : undefined
}

/** The SEC_TOKEN_REVOCATION_EXPR clause of one revoked job; both parts are plain names (checked at revoke time). */
export function pilotJobClause(value: string, classAdString: (s: string) => string): string {
  const p = parsePilotJob(value)
  if (!p) throw new TypeError('a pilot-job revocation value is SITE:JOBID')
  return `(${CLAIM_SITE} =?= ${classAdString(p.site)} && ${CLAIM_SLURM_JOB} =?= ${classAdString(p.job)})`
}
