import { z } from 'zod'
import { MAX_ENROLMENT_CREDENTIAL_BYTES, PILOT_ENROLMENT_TOKEN_TYPE, PILOT_FIELDS } from '../../contract/pilot.ts'
import { TOKEN_TYPE } from '../../contract/token_exchange.ts'
import { EXCHANGE_FIELDS as f } from '../../contract/token_request.ts'

/**
 * The form bodies POST /token takes, one per flow, assembled from the field schemas the parsers check
 * values with (contract/token_request.ts, contract/pilot.ts). The flow is chosen by the token types alone
 * (issuance/pilot_exchange.ts), so exactly one of these describes any request the broker serves.
 */

/** RFC 8693 §2.1 with the broker's extension parameters. `audience` and `resource` may be repeated. */
export const ExchangeForm = z.object({
  grant_type: f.grant_type,
  subject_token: f.subject_token,
  subject_token_type: f.subject_token_type,
  requested_token_type: f.requested_token_type.optional(),
  role: f.role,
  audience: z.array(f.audience).optional(),
  resource: z.array(f.resource).optional(),
  scope: f.scope.optional(),
  host: f.host.optional(),
  lifetime: f.lifetime.optional(),
  site: f.site.optional(),
  slurm_job_id: f.slurm_job_id.optional(),
  client_id: f.client_id.optional(),
}).describe('Token exchange: an IAM access token for an IDTOKEN, a SciToken or an access token.')

/** An exchange that asks for a pilot enrolment credential for `pilot_count` pilots (docs/pilots.md). */
export const PilotEnrolmentForm = ExchangeForm.extend({
  requested_token_type: z.literal(PILOT_ENROLMENT_TOKEN_TYPE),
  pilot_count: PILOT_FIELDS.pilot_count,
}).describe('Pilot enrolment: an IAM access token for a one-job enrolment credential.')

const pilotCredential = z.string().min(1).max(MAX_ENROLMENT_CREDENTIAL_BYTES)

/** A pilot redeems its enrolment credential on its node for its first IDTOKEN. */
export const PilotRedemptionForm = z.object({
  grant_type: f.grant_type,
  subject_token: pilotCredential.describe('The enrolment credential.'),
  subject_token_type: z.literal(PILOT_ENROLMENT_TOKEN_TYPE),
  requested_token_type: z.literal(TOKEN_TYPE.idtoken).optional(),
  slurm_job_id: PILOT_FIELDS.slurm_job_id,
  node: PILOT_FIELDS.node,
  job_end: PILOT_FIELDS.job_end,
  slurm_restart_count: PILOT_FIELDS.slurm_restart_count,
}).describe('Pilot redemption: the enrolment credential for the pilot\'s IDTOKEN.')

/** A pilot renews its IDTOKEN with the one it holds. */
export const PilotRenewalForm = z.object({
  grant_type: f.grant_type,
  subject_token: pilotCredential.describe('The pilot\'s current IDTOKEN.'),
  subject_token_type: z.literal(TOKEN_TYPE.idtoken),
  requested_token_type: z.literal(TOKEN_TYPE.idtoken).optional(),
}).describe('Pilot renewal: the pilot\'s IDTOKEN for a fresh one.')

export const TokenRequestForm = z.union([ExchangeForm, PilotEnrolmentForm, PilotRedemptionForm, PilotRenewalForm])
