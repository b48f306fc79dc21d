import { z } from 'zod'
import type { OAuthErrorCode } from '../../errors.ts'
import { GONE_CREDENTIAL_STATES } from '../../contract/job_credentials.ts'
import { ISSUED_TOKEN_TYPES } from '../../contract/token_exchange.ts'
import { PILOT_ENROLMENT_TOKEN_TYPE } from '../../contract/pilot.ts'
import { REVOCATION_KINDS } from '../../revocation/revocation.ts'

/**
 * What the broker answers, as zod schemas for the OpenAPI document. Requests are described by the schemas
 * that validate them (next to their routes); responses are built by code, so these describe them, and
 * test/http/openapi.test.ts checks real answers against the document.
 */

/** Every `error` the broker writes: BrokerError codes (404 and 405 are invalid_request) and server_error. */
const ERROR_CODES = [
  'invalid_request', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'invalid_target', 'access_denied', 'temporarily_unavailable', 'invalid_token', 'slow_down', 'server_error',
] as const satisfies ReadonlyArray<OAuthErrorCode | 'server_error'>
type NoneLeft<T extends never> = T
/** Fails to compile when errors.ts gains a code this list lacks. */
export type UnlistedErrorCodes = NoneLeft<Exclude<OAuthErrorCode, (typeof ERROR_CODES)[number]>>

/** RFC 6749 §5.2: the one error shape of every endpoint (oauth_error_response.ts). */
export const OAuthError = z.object({
  error: z.enum(ERROR_CODES),
  error_description: z.string().regex(/^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/).optional().describe('Safe for the client; never a token or a secret.'),
})

/** The job-token read's 403 (RFC 6749 §5.2): the OAuth error, and `credential` (contract/job_credentials.ts GoneCredentialState) when it is gone. */
export const JobTokenRefusal = OAuthError.extend({
  credential: z.enum(GONE_CREDENTIAL_STATES).optional().describe('Present only when the credential itself is gone for good (unknown, revoked, or outdated: it holds no IAM refresh token); only a new registration serves the user again. Absent for a refusal an operator can lift (policy, fetched_by, a revoked identity).'),
})

/** RFC 8693 §2.2.1. */
export const TokenExchangeResponse = z.object({
  access_token: z.string().describe('The issued token (IDTOKEN, SciToken, access token or pilot enrolment credential).'),
  issued_token_type: z.enum([...ISSUED_TOKEN_TYPES, PILOT_ENROLMENT_TOKEN_TYPE]),
  token_type: z.enum(['N_A', 'Bearer']),
  expires_in: z.number().int().nonnegative(),
  scope: z.string(),
  pilot_identity: z.string().optional().describe('A pilot enrolment only: pilot.identity with site, enrolment and constants filled in ({slurm_job_id} and {node} remain): what its pilots will be called.'),
})

/** RFC 7517 §5, public members only. */
export const Jwks = z.object({
  keys: z.array(z.object({
    kty: z.enum(['EC', 'RSA']),
    kid: z.string(),
    alg: z.enum(['ES256', 'RS256']),
    use: z.literal('sig'),
    crv: z.string().optional(),
    x: z.string().optional(),
    y: z.string().optional(),
    n: z.string().optional(),
    e: z.string().optional(),
  })),
})

/** RFC 8414 §2 (contract/discovery.ts). */
export const BrokerMetadata = z.object({
  issuer: z.string(),
  jwks_uri: z.string(),
  token_endpoint: z.string(),
  grant_types_supported: z.array(z.string()),
  token_endpoint_auth_methods_supported: z.array(z.string()),
  response_types_supported: z.array(z.string()),
  id_token_signing_alg_values_supported: z.array(z.string()),
  issued_token_types_supported: z.array(z.string()),
})

export const Liveness = z.object({ status: z.literal('ok') })

export const NotLive = z.object({
  status: z.literal('failing'),
  reason: z.string().describe('What only a restart cures, e.g. the audit write path stopped for good.'),
})

export const Readiness = z.object({
  status: z.enum(['ready', 'not_ready']),
  checks: z.record(z.string(), z.string()).describe('Each dependency: "ok" or why not.'),
  iam: z.record(z.string(), z.unknown()).optional().describe('Reachability of each trusted IAM; does not decide readiness.'),
})

const AuditEvent = z.object({
  type: z.string(),
  time: z.number().int(),
  decision: z.enum(['allow', 'deny']).optional(),
  reason: z.string().optional(),
}).catchall(z.unknown()).describe('The audited event (docs/audit.md); never a token or a secret.')

const UnreadableBody = z.object({ reason: z.string(), body: z.string() })
  .describe('In place of `event`: the stored body is no event (edited by hand, or corrupted), so the record does not verify; why, and the body as stored.')

export const AuditPage = z.object({
  records: z.array(z.union([
    z.object({ seq: z.number().int().positive(), hash: z.string(), prev_hash: z.string(), event: AuditEvent }),
    z.object({ seq: z.number().int().positive(), hash: z.string(), prev_hash: z.string(), unreadable: UnreadableBody }),
  ])),
  next_cursor: z.string().optional(),
})

export const Revocation = z.object({
  id: z.number().int().positive(),
  kind: z.enum(REVOCATION_KINDS),
  value: z.string(),
  revoked_at: z.number().int(),
  until: z.number().int(),
  gen: z.number().int().optional(),
  reason: z.string().optional(),
  revoked_by: z.string().optional(),
  iss: z.string().optional(),
  lifted_at: z.number().int().optional(),
  lifted_by: z.string().optional(),
})

export const RevocationCreated = z.object({ revocation: Revocation })
export const RevocationDryRun = z.object({
  dry_run: z.object({ kind: z.enum(REVOCATION_KINDS), value: z.string(), live_tokens: z.number().int().nonnegative() }),
})
export const RevocationList = z.object({ revocations: z.array(Revocation) })
export const CondorExpressionJson = z.object({
  expr: z.string(),
  clauses: z.number().int().nonnegative().describe('How many clauses the expression has.'),
  unexpressed: z.number().int().nonnegative().describe('Active revocations left out: stored values holding characters HTCondor would read as something else (the broker still refuses what they name).'),
  generated_at: z.number().int(),
  config_line: z.string().describe('SEC_TOKEN_REVOCATION_EXPR = …, for an HTCondor config file.'),
})

export const LivePilots = z.object({
  pilots: z.array(z.object({
    site: z.string(), job: z.string(), node: z.string(), identity: z.string(), role: z.string(),
    enrolment: z.string().describe('The jti of the enrolment credential the pilot redeemed: its cluster\'s pilot group (revoke it with {"pilot-enrolment": …}).'),
    restart: z.number().int().describe('SLURM_RESTART_COUNT of the newest run of the job on this node that holds an unexpired token (0: the first run).'),
    redeemedAt: z.number().int(), lastRenewedAt: z.number().int().optional(), renewals: z.number().int(),
    exp: z.number().int(), jobEnd: z.number().int(),
  })),
})

export const PolicyExplanation = z.object({
  decision: z.object({ allow: z.boolean() }).catchall(z.unknown()).describe('What the token endpoint would decide.'),
  rules: z.array(z.object({
    ruleId: z.string(),
    source: z.string(),
    description: z.string().optional(),
    outcome: z.enum(['allowed', 'denied', 'caller-mismatch', 'role-not-granted']),
    reasons: z.array(z.string()),
    error: z.string().optional(),
    decisive: z.boolean(),
  })),
  limits: z.object({
    max_count: z.number(),
    enrolment_lifetime: z.object({ default: z.number(), max: z.number() }),
    up_to: z.boolean(),
    max_restarts: z.number().describe('The highest SLURM restart count a redemption may state (pilot.max_restarts).'),
    identity: z.string().describe('pilot.identity with constants filled in ({site}, {enrolment}, {slurm_job_id} and {node} remain): the sub of every pilot token.'),
  }).optional().describe('For a pilot enrolment: the pilot grant of the rule that decided.'),
  policyDigest: z.string(),
})
