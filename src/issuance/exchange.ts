import type { AuditLog } from '../audit/audit_log.ts'
import type { RefusalTally } from '../audit/refusal_tally.ts'
import {
  ISSUED_TYPE_OF, parseTokenExchangeRequest, subjectTokenOf, type TokenExchangeRequest, type TokenRequestForm,
} from '../contract/token_request.ts'
import {
  AccessDenied, BrokerError, InvalidRequest, InvalidScope, InvalidTarget, SlowDown, UnauthorizedClient,
} from '../errors.ts'
import type { RequestLimits } from '../ratelimit/request_limits.ts'
import type { SubjectTokenVerifier, VerifiedSubject } from '../iam/subject.ts'
import { delegationRefusal } from '../iam/delegation.ts'
import { recordDenial } from './issue.ts'
import { unrecordableRefusal } from './unrecordable_refusal.ts'
import { pilotFlowOf, type PilotFlow } from './pilot_exchange.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import type { Decision, DecisionRequest } from '../policy/decision.ts'
import type { IssuanceBlocks } from '../revocation/revocation_checker.ts'

/** What came out of issuance, ready for the RFC 8693 response. */
export interface IssuedToken {
  token: string
  expiresIn: number
  /** Space-separated scope actually granted (`condor:/…` for IDTOKENs). */
  scope: string
}

/** Request context the audit record needs; no HTTP types. */
export interface RequestContext {
  requestId: string
  clientAddress?: string
  /** Filled in as the request is understood, for the edge's access log; never holds a token. */
  summary?: RequestSummary
}

/** Who asked for what, as far as the broker got before answering. */
export interface RequestSummary {
  caller?: { iss: string; sub: string; client_id?: string | undefined }
  role?: string
  tokenKind?: string
  /** Pilot requests: enrol, redeem or renew. */
  flow?: string
}

type Allowed = Extract<Decision, { allow: true }>

export interface ExchangeDeps {
  iam: SubjectTokenVerifier
  /** The current policy's decision function (policy reloads swap what it closes over). */
  decide: (req: DecisionRequest) => Decision
  /** Mints and audits (fail closed) a token the policy allowed. */
  issue: (decision: Allowed, subject: VerifiedSubject, ctx: RequestContext) => Promise<IssuedToken>
  /** Obtains an audience-narrowed IAM access token (requested_token_type access_token), audited likewise. */
  narrow: (decision: Allowed, subject: VerifiedSubject, subjectToken: string, ctx: RequestContext) => Promise<IssuedToken>
  /** Active caller and identity revocations: nothing is issued to a revoked caller or as a revoked identity. */
  blocks: IssuanceBlocks
  audit: AuditLog
  /** Counts refusals with no verified caller; they are written in aggregate, never one record each. */
  refusals: Pick<RefusalTally, 'note'>
  clock: Clock
  log: Logger
  /** Rate limits per client address, caller and role (src/ratelimit); absent: nothing is limited. */
  limits?: Pick<RequestLimits, 'blockedAddress' | 'noteRefused' | 'admit' | 'admitRole' | 'limitsCallers'>
  /** SLURM pilot requests (enrolment, redemption, renewal; pilot_exchange.ts), recognised by their token types. */
  pilots?: (flow: PilotFlow, form: TokenRequestForm, ctx: RequestContext) => Promise<TokenExchangeResponse>
}

export interface TokenExchangeResponse {
  access_token: string
  issued_token_type: string
  token_type: 'N_A' | 'Bearer'
  expires_in: number
  scope: string
  /** A pilot enrolment only: what its pilots will be called (PILOT_IDENTITY_FIELD). */
  pilot_identity?: string
}

const DENIAL: Record<Extract<Decision, { allow: false }>['error'], new (d: string) => BrokerError> = {
  invalid_scope: InvalidScope,
  invalid_target: InvalidTarget,
  unauthorized_client: UnauthorizedClient,
  access_denied: AccessDenied,
  invalid_request: InvalidRequest,
}

/**
 * RFC 8693 token exchange: IAM access token in, one least-privilege token for one role out.
 * Order matters: read the form, verify the caller, refuse it if revoked, parse the rest, decide by
 * policy (default deny), refuse a revoked identity, then mint and audit; the token leaves only after its
 * audit record is committed. A revoked caller or identity is `unauthorized_client` (RFC 6749 §5.2: not
 * authorized to use this grant), the code every other "not for you" refusal at this endpoint uses;
 * `access_denied` belongs to the authorization endpoint.
 *
 * Every refusal is audited. The subject token is verified before the other parameters are judged, so a
 * refusal of a known caller (a bad parameter as much as a policy denial) is one `token.denied` record with
 * the caller, the request id and the reason (best effort: a failing audit store cannot turn a refusal into
 * a token). A refusal with nobody to name (unreadable body, a subject token that does not verify) is only
 * counted (`deps.refusals`) and written in aggregate, so unauthenticated garbage cannot fill the audit
 * queue that issuances wait on. The error answered is the same either way: a malformed request is refused
 * for its form before its subject token's verdict.
 *
 * Rate limits (`deps.limits`) come first for an address whose unauthenticated requests keep being refused,
 * right after verification for a caller, and once the policy granted it for the role: `slow_down` (429).
 * A caller's first such refusal in an audit window is recorded, the rest only counted with the
 * unauthenticated ones.
 * @param readForm the request's form fields; may throw a BrokerError when the body is not a form.
 * @see https://www.rfc-editor.org/rfc/rfc8693.html#section-2
 */
export async function exchangeToken(readForm: () => Promise<TokenRequestForm> | TokenRequestForm, ctx: RequestContext, deps: ExchangeDeps): Promise<TokenExchangeResponse> {
  let subject: VerifiedSubject | undefined
  let req: TokenExchangeRequest | undefined
  // The rule that refused, for the denial record; unset when the refusal came before the policy.
  let deniedBy: string | undefined
  // The site the policy bound, once a decision allowed: a later refusal is recorded under it.
  let boundSite: string | undefined
  // A pilot request audits and counts its own refusals.
  let delegated = false
  // A rate-limit refusal of a caller already recorded in this audit window: counted, not recorded again.
  let countOnly = false
  try {
    // First and cheapest: an address whose unauthenticated requests keep being refused is turned away
    // before its body is read or IAM is asked about its token.
    const blocked = deps.limits?.blockedAddress(ctx.clientAddress)
    if (blocked) throw new SlowDown(blocked.description, blocked.retryAfter)
    const form = await readForm()
    const flow = deps.pilots ? pilotFlowOf(form) : undefined
    if (flow) {
      delegated = true
      if (ctx.summary) ctx.summary.flow = flow
      return await deps.pilots!(flow, form, ctx)
    }
    const verified = await verifyRequest(form, deps.iam)
    subject = verified.subject
    if (ctx.summary) ctx.summary.caller = { iss: subject.iss, sub: subject.sub, client_id: subject.client_id }
    const parsed = verified.parsed
    if (!(parsed instanceof BrokerError) && ctx.summary) {
      ctx.summary.role = parsed.role
      if (parsed.tokenKind) ctx.summary.tokenKind = parsed.tokenKind
    }
    // Every request of a verified caller counts, a malformed one too; the role's only once the policy grants it.
    if (deps.limits?.limitsCallers) {
      const limited = await deps.limits.admit(subject, undefined)
      if (limited) {
        countOnly = !limited.record
        if (!(parsed instanceof BrokerError)) req = parsed
        throw new SlowDown(limited.description, limited.retryAfter)
      }
    }
    if (parsed instanceof BrokerError) throw parsed
    req = parsed
    const callerBlock = deps.blocks.blockedCaller(subject)
    if (callerBlock !== undefined) throw new UnauthorizedClient(callerBlock)
    // A token IAM issued to another client acting for the caller (act) is refused, and the refusal audited.
    const actedFor = delegationRefusal(subject)
    if (actedFor !== undefined) throw new InvalidRequest(actedFor)
    const decision = deps.decide({
      subject,
      role: req.role,
      ...(req.tokenKind ? { tokenKind: req.tokenKind } : {}),
      audience: req.audience,
      ...(req.scopes ? { scopes: req.scopes } : {}),
      ...(req.host ? { host: req.host } : {}),
      ...(req.lifetime ? { lifetime: req.lifetime } : {}),
      params: req.params,
    })
    if (!decision.allow) {
      deniedBy = decision.ruleId
      throw new DENIAL[decision.error](decision.reason)
    }
    boundSite = decision.site
    if (deps.limits?.limitsCallers) {
      const limited = await deps.limits.admitRole(decision.role)
      if (limited) {
        countOnly = !limited.record
        throw new SlowDown(limited.description, limited.retryAfter)
      }
    }
    if (ctx.summary) ctx.summary.tokenKind = decision.tokenKind
    // A narrowed IAM token's sub is the caller's own, already checked above.
    const identityBlock = decision.tokenKind === 'access_token' ? undefined : deps.blocks.blockedIdentity(decision.identity)
    if (identityBlock !== undefined) {
      deniedBy = decision.ruleId
      throw new UnauthorizedClient(identityBlock)
    }
    const issued = decision.tokenKind === 'access_token'
      ? await deps.narrow(decision, subject, req.subjectToken, ctx)
      : await deps.issue(decision, subject, ctx)
    return {
      access_token: issued.token,
      issued_token_type: ISSUED_TYPE_OF[decision.tokenKind],
      // RFC 8693 §2.2.1: "N_A" when the issued token is not an access token usable as an HTTP bearer.
      token_type: decision.tokenKind === 'idtoken' ? 'N_A' : 'Bearer',
      expires_in: issued.expiresIn,
      scope: issued.scope,
    }
  } catch (err) {
    if (err instanceof BrokerError && !delegated) {
      if (subject && !countOnly) await auditDenial(err, deniedBy, req, boundSite, subject, ctx, deps)
      else deps.refusals.note(err.error, ctx.clientAddress)
      // A refused unauthenticated request counts against its address, unless the address limit refused it
      // (that would only prolong a block) or the broker failed rather than the client (503: IAM or audit down).
      if (!subject && !(err instanceof SlowDown) && err.status < 500) deps.limits?.noteRefused(ctx.clientAddress)
    }
    throw err
  }
}

/**
 * Parses an exchange form and verifies its subject token, for a caller that names the verified subject in
 * its refusals. A malformed form is refused for its form, whatever its subject token's verdict; when the
 * token verifies, the form's error comes back in `parsed` for the caller to throw once it knows the subject.
 */
export async function verifyRequest(
  form: TokenRequestForm, iam: SubjectTokenVerifier,
): Promise<{ subject: VerifiedSubject; parsed: TokenExchangeRequest | BrokerError }> {
  let parsed: TokenExchangeRequest | BrokerError
  try {
    parsed = parseTokenExchangeRequest(form)
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err
    parsed = err
  }
  const subjectToken = subjectTokenOf(form)
  if (subjectToken === undefined) throw parsed instanceof BrokerError ? parsed : new TypeError('a parsed request has a subject token')
  try {
    return { subject: await iam.verify(subjectToken), parsed }
  } catch (err) {
    throw parsed instanceof BrokerError && err instanceof BrokerError ? parsed : err
  }
}

/** One `token.denied` record for a refusal of a verified caller; a store failure is logged, the refusal stands. */
async function auditDenial(
  err: BrokerError, deniedBy: string | undefined, req: TokenExchangeRequest | undefined, boundSite: string | undefined, caller: VerifiedSubject,
  ctx: RequestContext, deps: ExchangeDeps,
): Promise<void> {
  if (unrecordableRefusal(err, ctx, deps.log, caller)) return
  try {
    await recordDenial(
      { error: err.error, reason: err.description, ruleId: deniedBy },
      req
        ? { role: req.role, tokenKind: req.tokenKind, audience: req.audience, scopes: req.scopes, host: req.host, site: boundSite, requestedSite: req.params.site }
        : {},
      { requestId: ctx.requestId, clientAddress: ctx.clientAddress, caller },
      deps,
    )
  } catch (storeErr) {
    // The refusal stands either way (a failing store never turns a denial into a token), but an
    // unrecorded denial is an operator's problem: say so.
    deps.log.error('could not audit a denial', { err: storeErr, requestId: ctx.requestId, error: err.error })
  }
}
