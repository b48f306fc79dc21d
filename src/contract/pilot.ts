import { z } from 'zod'
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

/**
 * The pilot identity when the policy names none: site, enrolment, job and node, so each pilot can be revoked
 * alone and a provisioned collector admits one enrolment's pilots with one ALLOW entry,
 * `pilot+<site>+<enrolment>+*@pilots.<trust domain>`. `+` is in no site name nor enrolment id, so HTCondor's `*`
 * cannot reach across a field: `pilot+hpc+…` never matches a pilot of site `hpc-b` or of another enrolment.
 */
export const DEFAULT_PILOT_IDENTITY = 'pilot+{site}+{enrolment}+{slurm_job_id}-{node}@pilots.{trust_domain}'

/**
 * Characters a pilot identity may put after {site} and {enrolment}: none is in a site name (letters, digits,
 * `_ . -`) or an enrolment id (hex), and HTCondor reads each as part of a name in an ALLOW list (unlike `,`,
 * space, `/` or `*`), and a revocation expression carries each (unlike `"`, `\\` or `$`).
 */
export const PILOT_IDENTITY_SEPARATORS = '+~=@'

/** The claim of a pilot token naming the enrolment credential (its `jti`) the pilot redeemed: its cluster's group. */
export const CLAIM_ENROLMENT = 'ctb_enrolment'

/**
 * The field of an enrolment answer that says what its pilots will be called: pilot.identity with the site, the
 * enrolment and the constants filled in, `{slurm_job_id}` and `{node}` left. Provisioning builds the group's
 * ALLOW entry from it, so the entry follows the policy.
 */
export const PILOT_IDENTITY_FIELD = 'pilot_identity'

/** The claim holding the SLURM job id, matched by `revoke --pilot-job SITE:JOBID`. */
export const CLAIM_SLURM_JOB = 'ctb_slurm_job'

/**
 * Restarts of one SLURM job (requeue, preemption with PreemptMode=REQUEUE, node failure with --requeue) whose
 * pilots may redeem again when the grant's `pilot.max_restarts` names no other bound: one preemption and one
 * node failure within a job's life. The pilot script keeps its staged credential for this many restarts.
 */
export const DEFAULT_PILOT_MAX_RESTARTS = 2

/** The most a policy's `pilot.max_restarts` (and the script's --max-requeues) may allow. */
export const MAX_PILOT_RESTARTS = 100

/** An enrolment credential is at most this long, printable ASCII without spaces. */
export const MAX_ENROLMENT_CREDENTIAL_BYTES = 4096

/** Most pilot tokens one credential may yield whatever the policy says (one per node of one job). */
export const MAX_PILOT_COUNT = 100_000

/**
 * The pilot form fields at POST /token, one zod schema each: the parsers below check values with these
 * objects and the OpenAPI document shows them.
 */
export const PILOT_FIELDS = {
  /** SLURM's job id, or `JOB_TASK` for an array task. */
  slurm_job_id: z.string().regex(/^[0-9]{1,20}(_[0-9]{1,10})?$/).describe('SLURM job id (JOB or JOB_TASK).'),
  node: z.string().max(253).regex(/^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63}){0,10}$/).describe('The node host name; only its short name is kept.'),
  job_end: z.string().regex(/^\d{1,12}$/).describe('Epoch seconds at which the SLURM job ends.'),
  /** SLURM_RESTART_COUNT: absent on a job's first run. */
  slurm_restart_count: z.string().regex(/^\d{1,4}$/).describe('SLURM_RESTART_COUNT: how often SLURM restarted the job (requeue, preemption); 0 or absent on its first run.').optional(),
  /** 1 to MAX_PILOT_COUNT (100000, spelt out so the document can show it), in at most six digits. */
  pilot_count: z.string().regex(/^(?=\d{1,6}$)0*([1-9]\d{0,4}|100000)$/).describe(`How many pilot tokens the credential may yield (1 to ${MAX_PILOT_COUNT}).`),
} as const

const valid = (schema: z.ZodType, value: string): boolean => schema.safeParse(value).success

/** What a pilot states when it redeems its credential. */
export interface PilotRedemptionParams {
  slurmJobId: string
  /** The node's short host name (first label, lower case). */
  node: string
  /** Epoch seconds at which the SLURM job ends. */
  jobEnd: number
  /** SLURM_RESTART_COUNT as the pilot states it: 0 on the job's first run, one more on each requeue. */
  restart: number
}

/**
 * Reads `slurm_job_id`, `node`, `job_end` and the optional `slurm_restart_count` of a redemption request. A job id is SLURM's number (an
 * array task as `JOB_TASK`); a node is a host name, of which only the short name is kept.
 */
export function parsePilotRedemption(one: (name: string) => string | undefined): PilotRedemptionParams {
  const job = one('slurm_job_id')
  if (job === undefined) throw new InvalidRequest('slurm_job_id is required to redeem a pilot enrolment')
  if (!valid(PILOT_FIELDS.slurm_job_id, job)) throw new InvalidRequest('slurm_job_id must be a SLURM job id (digits, or JOB_TASK for an array task)')
  const node = one('node')
  if (node === undefined) throw new InvalidRequest('node is required to redeem a pilot enrolment')
  if (!valid(PILOT_FIELDS.node, node)) throw new InvalidRequest('node must be a host name')
  const end = one('job_end')
  if (end === undefined) throw new InvalidRequest('job_end is required to redeem a pilot enrolment')
  if (!valid(PILOT_FIELDS.job_end, end)) throw new InvalidRequest('job_end must be whole epoch seconds')
  const restart = one('slurm_restart_count')
  if (restart !== undefined && !valid(PILOT_FIELDS.slurm_restart_count, restart)) {
    throw new InvalidRequest('slurm_restart_count must be SLURM_RESTART_COUNT, a whole number from 0 to 9999')
  }
  return { slurmJobId: job, node: node.split('.')[0]!.toLowerCase(), jobEnd: Number(end), restart: Number(restart ?? 0) }
}

/** Reads `pilot_count` of an enrolment request. */
export function parsePilotCount(value: string | undefined): number {
  if (value === undefined) throw new InvalidRequest('pilot_count is required for a pilot enrolment')
  if (!valid(PILOT_FIELDS.pilot_count, value)) {
    throw new InvalidRequest(`pilot_count must be a whole number from 1 to ${MAX_PILOT_COUNT}`)
  }
  return Number(value)
}
