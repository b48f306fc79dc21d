import { InvalidRequest } from '../errors.ts'

/**
 * The SLURM pilot wire contract at POST /token (docs/pilots.md): obtaining an enrolment credential,
 * redeeming it at pilot start, renewing the pilot's IDTOKEN. Clients (the sbatch pilot script) build
 * against exactly these names.
 */

/** `requested_token_type` (obtaining) and `subject_token_type` (redeeming) of an enrolment credential. */
export const PILOT_ENROLMENT_TOKEN_TYPE = 'urn:condor-token-broker:token-type:pilot-enrolment'

/** The HTCondor levels of every pilot token; `DAEMON` is added only where the policy marks the site tunneled. */
export const PILOT_AUTHZ = ['READ', 'ADVERTISE_STARTD', 'ADVERTISE_MASTER'] as const
/** Added to PILOT_AUTHZ for a tunneled site (the startd reaches the collector through CCB). */
export const PILOT_TUNNEL_AUTHZ = 'DAEMON'

/** The pilot identity when the policy names none: site, job and node, so each can be revoked alone. */
export const DEFAULT_PILOT_IDENTITY = 'pilot-{site}-{slurm_job_id}-{node}@pilots.{trust_domain}'

/** The claim holding the SLURM job id, matched by `revoke --pilot-job SITE:JOBID`. */
export const CLAIM_SLURM_JOB = 'ctb_slurm_job'

/** An enrolment credential is at most this long, printable ASCII without spaces. */
export const MAX_ENROLMENT_CREDENTIAL_BYTES = 4096

/** Most pilot tokens one credential may yield whatever the policy says (one per node of one job). */
export const MAX_PILOT_COUNT = 100_000

const JOB_ID = /^[0-9]{1,20}(_[0-9]{1,10})?$/
const NODE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63}){0,10}$/

/** What a pilot states when it redeems its credential. */
export interface PilotRedemptionParams {
  slurmJobId: string
  /** The node's short host name (first label, lower case). */
  node: string
  /** Epoch seconds at which the SLURM job ends. */
  jobEnd: number
}

/**
 * Reads `slurm_job_id`, `node` and `job_end` of a redemption request. A job id is SLURM's number (an
 * array task as `JOB_TASK`); a node is a host name, of which only the short name is kept.
 */
export function parsePilotRedemption(one: (name: string) => string | undefined): PilotRedemptionParams {
  const job = one('slurm_job_id')
  if (job === undefined) throw new InvalidRequest('slurm_job_id is required to redeem a pilot enrolment')
  if (!JOB_ID.test(job)) throw new InvalidRequest('slurm_job_id must be a SLURM job id (digits, or JOB_TASK for an array task)')
  const node = one('node')
  if (node === undefined) throw new InvalidRequest('node is required to redeem a pilot enrolment')
  if (!NODE.test(node) || node.length > 253) throw new InvalidRequest('node must be a host name')
  const end = one('job_end')
  if (end === undefined) throw new InvalidRequest('job_end is required to redeem a pilot enrolment')
  if (!/^\d{1,12}$/.test(end)) throw new InvalidRequest('job_end must be whole epoch seconds')
  return { slurmJobId: job, node: node.split('.')[0]!.toLowerCase(), jobEnd: Number(end) }
}

/** Reads `pilot_count` of an enrolment request. */
export function parsePilotCount(value: string | undefined): number {
  if (value === undefined) throw new InvalidRequest('pilot_count is required for a pilot enrolment')
  if (!/^\d{1,6}$/.test(value) || Number(value) < 1 || Number(value) > MAX_PILOT_COUNT) {
    throw new InvalidRequest(`pilot_count must be a whole number from 1 to ${MAX_PILOT_COUNT}`)
  }
  return Number(value)
}
