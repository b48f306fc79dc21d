import { hash, type KeyObject } from 'node:crypto'
import type { AuditEvent } from '../audit/audit_log.ts'
import type { RefusalTally } from '../audit/refusal_tally.ts'
import {
  CLAIM_ENROLMENT, CLAIM_SLURM_JOB, MAX_ENROLMENT_CREDENTIAL_BYTES, PILOT_IDENTITY_FIELD, PILOT_AUTHZ, PILOT_ENROLMENT_TOKEN_TYPE, PILOT_TUNNEL_AUTHZ,
  parsePilotCount, parsePilotRedemption, type PilotRedemptionParams,
} from '../contract/pilot.ts'
import { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE } from '../contract/token_exchange.ts'
import type { TokenRequestForm } from '../contract/token_request.ts'
import { delegationRefusal } from '../iam/delegation.ts'
import { AuditStoreUnavailable, BrokerError, InvalidGrant, InvalidRequest, TemporarilyUnavailable, UnauthorizedClient, UnsupportedGrantType } from '../errors.ts'
import type { SubjectTokenVerifier } from '../iam/subject.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import type { RequestLimits } from '../ratelimit/request_limits.ts'
import type { CompiledGrant, CompiledPilotGrant, Policy } from '../policy/compile.ts'
import { newJti } from '../lib/jti.ts'
import { decideEnrolment, pilotGrantOf, pilotIdentityPattern, renderPilotIdentity } from '../policy/pilot_decision.ts'
import { isClassAdSafe } from '../revocation/condor_expression.ts'
import type { IssuanceBlocks, RevocationChecker } from '../revocation/revocation_checker.ts'
import type { RevocationService } from '../revocation/revocation_service.ts'
import type { BrokerStore } from '../storage/chained_store.ts'
import type { RenewalRefusal, RenewalRefusalReasons } from '../storage/pilot_renewals.ts'
import { parseAuthzLevel } from './authz.ts'
import { verifyRequest, type RequestContext, type TokenExchangeResponse } from './exchange.ts'
import { unrecordableRefusal } from './unrecordable_refusal.ts'
import { buildIdTokenClaims, mintIdToken, type IdTokenKey } from './idtoken.ts'
import { hs256Valid } from './jws.ts'
import { mintEnrolmentCredential, readEnrolmentCredential, type EnrolmentClaims } from './pilot_enrolment.ts'
import { pilotDetail, type MintedPilotToken, type PilotRecord, type PilotRegistry } from './pilot_registry.ts'

/** The three pilot requests at POST /token (docs/pilots.md). */
export type PilotFlow = 'enrol' | 'redeem' | 'renew'

export interface PilotExchangeDeps {
  iam: SubjectTokenVerifier
  policy: { readonly current: Policy }
  idtokenKey: IdTokenKey
  /** MACs enrolment credentials (enrolmentKeyFrom). */
  enrolmentKey: KeyObject
  store: Pick<BrokerStore, 'record' | 'redeemPilotSlot' | 'renewPilotToken'>
  registry: Pick<PilotRegistry, 'add' | 'lookup' | 'mintedToken'>
  /** `revoke`: a reused pilot token revokes its pilot's identity (RevocationService.revoke, audited). */
  revocations: RevocationChecker & IssuanceBlocks & { generationOf(role: string): number } & Pick<RevocationService, 'revoke'>
  refusals: Pick<RefusalTally, 'note'>
  /** The address limit (docs/rate-limits.md): a refusal that names nobody counts against its address. */
  limits?: Pick<RequestLimits, 'noteRefused'>
  clock: Clock
  log: Logger
  trustDomain: string
  /** config idtoken.max_lifetime: no pilot token lives longer, whatever the policy says. */
  maxIdTokenLifetime: number
}

/**
 * Which pilot request a form is, or undefined for an ordinary exchange. Decided by the token types only,
 * so a form that is none of them costs the exchange two string comparisons.
 */
export function pilotFlowOf(form: TokenRequestForm): PilotFlow | undefined {
  if (form.requested_token_type === PILOT_ENROLMENT_TOKEN_TYPE) return 'enrol'
  const subjectType = form.subject_token_type
  if (subjectType === PILOT_ENROLMENT_TOKEN_TYPE) return 'redeem'
  if (subjectType === TOKEN_TYPE.idtoken) return 'renew'
  return undefined
}

/** Who a pilot request speaks for, once its token verified: named in its refusal records. */
interface KnownCaller { iss: string; sub: string; client_id?: string; groups?: string[] }

/** A refusal whose record the store already committed (a used-up credential): not recorded twice. */
class AuditedRefusal extends InvalidGrant {}

// The refusals a renewal may end in, made once: an Error made per request (its stack captured) cost the
// renewal path several µs (bench/ab.ts renewal). Only their code and description are read.
const REUSED = new InvalidGrant('the pilot token was already renewed: reusing it forks its renewal chain, so the pilot identity is revoked')
const STALE = new TemporarilyUnavailable('the pilot token was renewed by a later request than this one; retry')
// Every renewal hands the store one refusal record without its reason, and these: the store gives the reason
// of the refusal it decides on. Two whole records per renewal (one reused, one stale) were built, checked,
// serialised and sent to the writer for nothing whenever the renewal went through, which is almost always.
const RENEWAL_REFUSED: RenewalRefusalReasons = Object.freeze({ reused: reasonOf(REUSED), stale: reasonOf(STALE) })

/**
 * The same for an attempt older than the answer already given (storage/pilot_renewals.ts): 503, which the
 * pilot retries. Nobody waits for it when the pilot's own later retry committed first; but when replicas'
 * clocks disagree by more than the pilot's retry delay, an honest retry can look older than the attempt it
 * retries, and a later retry (minted later) then gets through where a 400 would end the pilot's renewals.
 */
class AuditedStaleAttempt extends TemporarilyUnavailable {}

/**
 * Serves one pilot request. Refusals follow the exchange's rule: when the presented token (IAM token,
 * enrolment credential, pilot IDTOKEN) verifies, the refusal is one `token.denied` record naming it;
 * when it does not, there is nobody to name and the refusal is only counted.
 * @see https://www.rfc-editor.org/rfc/rfc8693.html#section-2
 */
export async function pilotExchange(flow: PilotFlow, form: TokenRequestForm, ctx: RequestContext, deps: PilotExchangeDeps): Promise<TokenExchangeResponse> {
  const state: { caller?: KnownCaller; role?: string; site?: string; rule?: string } = {}
  try {
    if (flow === 'enrol') return await enrol(form, ctx, deps, state)
    if (flow === 'redeem') return await redeem(form, ctx, deps, state)
    return await renew(form, ctx, deps, state)
  } catch (err) {
    if (err instanceof BrokerError && !(err instanceof AuditedRefusal) && !(err instanceof AuditedStaleAttempt)) {
      if (state.caller) await auditRefusal(err, flow, state as typeof state & { caller: KnownCaller }, ctx, deps)
      else {
        deps.refusals.note(err.error, ctx.clientAddress)
        // As the exchange does: not a broker failure (5xx), which is no fault of the client's.
        if (err.status < 500) deps.limits?.noteRefused(ctx.clientAddress)
      }
    }
    throw err
  } finally {
    summarise(ctx, flow, state)
  }
}

/** The caller and role as far as the request got, for the access log (no tokens: the caller is iss/sub/client_id). */
function summarise(ctx: RequestContext, flow: PilotFlow, state: { caller?: KnownCaller; role?: string }): void {
  if (!ctx.summary) return
  if (state.caller) ctx.summary.caller = { iss: state.caller.iss, sub: state.caller.sub, client_id: state.caller.client_id }
  if (state.role) ctx.summary.role = state.role
  // An enrolment hands out an enrolment credential; redemption and renewal a pilot IDTOKEN.
  ctx.summary.tokenKind = flow === 'enrol' ? 'pilot_enrolment' : 'idtoken'
}

async function enrol(form: TokenRequestForm, ctx: RequestContext, deps: PilotExchangeDeps, state: { caller?: KnownCaller; role?: string; site?: string; rule?: string }): Promise<TokenExchangeResponse> {
  // The ordinary parser judges everything but the two pilot fields.
  const { requested_token_type: _r, pilot_count: _c, ...rest } = form
  const { subject, parsed } = await verifyRequest(rest, deps.iam)
  state.caller = { iss: subject.iss, sub: subject.sub, ...(subject.client_id !== undefined ? { client_id: subject.client_id } : {}), groups: subject.groups }
  if (parsed instanceof BrokerError) throw parsed
  state.role = parsed.role
  if (parsed.audience.length > 0 || parsed.scopes !== undefined || parsed.host !== undefined || parsed.params.slurm_job_id !== undefined) {
    throw new InvalidRequest('a pilot enrolment takes role, site, pilot_count and lifetime only')
  }
  const count = parsePilotCount(one(form, 'pilot_count'))
  // The credential carries the client_id (so `revoke --client` reaches it) within its 4 KiB: bounded as a sub is.
  if (subject.client_id !== undefined && !/^[\x20-\x7e]{1,255}$/.test(subject.client_id)) {
    throw new InvalidRequest('subject_token client_id is not a printable string of at most 255 characters')
  }
  const blocked = deps.revocations.blockedCaller(subject)
  if (blocked !== undefined) throw new UnauthorizedClient(blocked)
  // As for any exchange (src/iam/delegation.ts): another client's token for the factory enrols no pilots.
  const actedFor = delegationRefusal(subject)
  if (actedFor !== undefined) throw new InvalidRequest(actedFor)
  // One policy for the decision and the answer: a reload while the record commits must not change either.
  const policy = deps.policy.current
  const d = decideEnrolment(policy, {
    subject, role: parsed.role, count,
    ...(parsed.params.site !== undefined ? { site: parsed.params.site } : {}),
    ...(parsed.lifetime !== undefined ? { lifetime: parsed.lifetime } : {}),
  })
  if (!d.allow) {
    state.rule = d.ruleId
    throw d.error === 'unauthorized_client' ? new UnauthorizedClient(d.reason) : new InvalidRequest(d.reason)
  }
  state.rule = d.ruleId
  state.site = d.site
  const now = deps.clock.now()
  const claims: EnrolmentClaims = {
    jti: newJti(now), iss: subject.iss, sub: subject.sub, ...(subject.client_id !== undefined ? { client_id: subject.client_id } : {}), rule: d.ruleId, ctb_role: d.role,
    ctb_gen: deps.revocations.generationOf(d.role), ctb_site: d.site, count: d.count, iat: now, exp: now + d.lifetime,
  }
  // What its pilots will be called, so provisioning admits exactly this enrolment's pilots (docs/provisioning.md).
  const g = pilotGrantOf(policy, d.ruleId, d.role, d.site)
  if (!g) throw new TypeError(`rule ${d.ruleId} allowed an enrolment for site ${d.site} without its pilot grant`)
  const identity = pilotIdentityPattern(g.pilot.identity, { site: d.site, enrolment: claims.jti })
  const credential = mintEnrolmentCredential(claims, deps.enrolmentKey)
  if (credential.length > MAX_ENROLMENT_CREDENTIAL_BYTES) throw new TypeError('an enrolment credential outgrew its wire limit')
  await deps.store.record({
    type: 'token.issued', time: now, requestId: ctx.requestId, caller: state.caller,
    ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
    role: d.role, tokenKind: 'pilot_enrolment', jti: claims.jti, exp: claims.exp,
    tokenSha256: hash('sha256', credential, 'hex'), policyRule: d.ruleId, decision: 'allow', site: d.site,
    detail: { gen: claims.ctb_gen, pilotCount: d.count },
  })
  return { access_token: credential, issued_token_type: PILOT_ENROLMENT_TOKEN_TYPE, token_type: 'N_A', expires_in: d.lifetime, scope: '', [PILOT_IDENTITY_FIELD]: identity }
}

async function redeem(form: TokenRequestForm, ctx: RequestContext, deps: PilotExchangeDeps, state: { caller?: KnownCaller; role?: string; site?: string; rule?: string }): Promise<TokenExchangeResponse> {
  let params: PilotRedemptionParams | BrokerError
  try {
    commonParams(form)
    params = parsePilotRedemption((n) => one(form, n))
  } catch (err) { if (!(err instanceof BrokerError)) throw err; params = err }
  const token = typeof form.subject_token === 'string' ? form.subject_token : ''
  const cred = token.length <= MAX_ENROLMENT_CREDENTIAL_BYTES ? readEnrolmentCredential(token, deps.enrolmentKey) : undefined
  if (!cred) throw params instanceof BrokerError ? params : new InvalidGrant('the pilot enrolment credential is not valid')
  state.caller = { iss: cred.iss, sub: cred.sub, ...(cred.client_id !== undefined ? { client_id: cred.client_id } : {}) }
  state.role = cred.ctb_role
  state.site = cred.ctb_site
  state.rule = cred.rule
  if (params instanceof BrokerError) throw params
  const now = deps.clock.now()
  if (cred.exp <= now) throw new InvalidGrant('the pilot enrolment credential has expired')
  // By its jti, by the caller behind it, or as a pilot group (`pilot-enrolment`: what a provisioning teardown revokes).
  if (deps.revocations.isRevoked(cred) || deps.revocations.isRevoked({ [CLAIM_ENROLMENT]: cred.jti }) || deps.revocations.blockedCaller(cred) !== undefined) {
    throw new InvalidGrant('the pilot enrolment credential has been revoked')
  }
  const g = pilotGrantOf(deps.policy.current, cred.rule, cred.ctb_role, cred.ctb_site)
  if (!g) throw new InvalidGrant('the policy in force no longer grants this pilot enrolment')
  if (params.jobEnd <= now) throw new InvalidRequest('job_end is not in the future')
  // A requeued or preempted job starts again under its job id and redeems again, each run taking a slot of the
  // credential. The restart count is the pilot's word, as the job end is; the grant bounds it, so a credential
  // kept on shared storage for the job's restarts yields no more runs than the policy allows.
  if (params.restart > g.pilot.maxRestarts) {
    throw new InvalidGrant(`slurm_restart_count ${params.restart} is above the ${g.pilot.maxRestarts} restarts role ${cred.ctb_role} allows`)
  }
  // The job end is the pilot's word, and every renewal believes it: unbounded, a stolen credential would yield
  // pilots renewing for years. The grant's lifetime.max (queue wait, walltime and margin) bounds it, trimmed
  // with up_to as an over-long lifetime is.
  const latestEnd = now + g.grant.lifetime.max
  if (params.jobEnd > latestEnd && !g.grant.upTo) {
    throw new InvalidRequest(`job_end is more than ${g.grant.lifetime.max}s away, the maximum lifetime of role ${cred.ctb_role}`)
  }
  const pilot: PilotRecord = {
    identity: renderPilotIdentity(g.pilot.identity, { site: cred.ctb_site, enrolment: cred.jti, slurm_job_id: params.slurmJobId, node: params.node }),
    site: cred.ctb_site, job: params.slurmJobId, node: params.node, jobEnd: Math.min(params.jobEnd, latestEnd),
    role: cred.ctb_role, rule: cred.rule, enrolment: cred.jti, redeemedAt: now, restart: params.restart,
  }
  // Reuse of a renewed token revokes this identity by `sub` (revokeLineage), as an admin stopping one node does.
  // The template's literal part is the policy's to spell and the job id and node lengthen it: an identity no
  // revocation can name (HTCondor's expression carries at most 256 printable characters, no `"`, `\` or `$`)
  // is never minted, or a forked chain under it could not be stopped.
  if (!isClassAdSafe(pilot.identity)) {
    throw new InvalidRequest(`the pilot identity role ${cred.ctb_role} gives this job and node could not be revoked: a revocation names 1 to 256 printable characters without quotes, backslashes or dollar signs`)
  }
  const minted = mintPilotToken(pilot, g, now, deps)
  if (deps.revocations.isRevoked({ ...minted.claims, iat: now }) || deps.revocations.blockedIdentity(pilot.identity) !== undefined) {
    throw new InvalidGrant('this pilot job or identity has been revoked')
  }
  const issued: AuditEvent = { ...minted.event, ...who(ctx, state.caller), type: 'token.issued', detail: { gen: minted.claims.ctb_gen, slurmJob: pilot.job, pilot: pilotDetail(pilot) } }
  const refused: AuditEvent = denialEvent(new InvalidGrant('the pilot enrolment credential is used up'), 'redeem', state as { caller: KnownCaller }, ctx, now)
  const outcome = await deps.store.redeemPilotSlot(cred.jti, cred.count, issued, refused)
  if (!outcome.redeemed) throw new AuditedRefusal('the pilot enrolment credential is used up')
  deps.registry.add(minted.claims.jti, pilot, minted.claims.exp, now, undefined, minted.minted)
  return minted.response
}

async function renew(form: TokenRequestForm, ctx: RequestContext, deps: PilotExchangeDeps, state: { caller?: KnownCaller; role?: string; site?: string; rule?: string }): Promise<TokenExchangeResponse> {
  let bad: BrokerError | undefined
  try { commonParams(form) } catch (err) { if (!(err instanceof BrokerError)) throw err; bad = err }
  const token = typeof form.subject_token === 'string' && form.subject_token.length <= MAX_ENROLMENT_CREDENTIAL_BYTES ? form.subject_token : ''
  // A pilot renews with the token this process last gave it: found by its SHA-256, its claims are the ones
  // signed, with no HMAC to recompute nor payload to decode (docs/performance.md). Any other token
  // (another replica's, an older one of the chain, a forgery) takes the signature check. Every check
  // below runs on the claims either way.
  const known = token ? deps.registry.mintedToken(hash('sha256', token, 'hex'), deps.idtokenKey) : undefined
  const claims = known?.claims ?? (token ? readOwnIdToken(token, deps.idtokenKey) : undefined)
  if (!claims) throw bad ?? new InvalidGrant('the pilot token is not valid')
  state.caller = { iss: String(claims.iss), sub: String(claims.sub) }
  if (typeof claims.ctb_role === 'string') state.role = claims.ctb_role
  if (typeof claims.ctb_site === 'string') state.site = claims.ctb_site
  if (bad) throw bad
  const now = deps.clock.now()
  const jti = claims.jti
  if (typeof jti !== 'string' || typeof claims[CLAIM_SLURM_JOB] !== 'string') throw new InvalidGrant('the subject token is not a pilot token')
  if (typeof claims.exp !== 'number' || claims.exp <= now) throw new InvalidGrant('the pilot token has expired')
  const pilot = known?.pilot ?? await deps.registry.lookup(jti)
  if (!pilot || pilot.identity !== claims.sub || pilot.site !== claims.ctb_site || pilot.job !== claims[CLAIM_SLURM_JOB]) {
    throw new InvalidGrant('the pilot token is not one this broker issued to a pilot')
  }
  state.rule = pilot.rule
  if (deps.revocations.isRevoked(claims) || deps.revocations.blockedIdentity(pilot.identity) !== undefined) throw new InvalidGrant('the pilot token has been revoked')
  // Revoking the enrolment (by the credential's jti, or as a pilot group: what a provisioning teardown does) ends
  // the pilots it yielded too, not only later redemptions. Asked by the enrolment the pilot was recorded with at
  // redemption, not only by the token's claim: a token minted before pilot tokens carried ctb_enrolment has none.
  if (deps.revocations.isRevoked({ jti: pilot.enrolment }) || deps.revocations.isRevoked({ [CLAIM_ENROLMENT]: pilot.enrolment })) {
    throw new InvalidGrant('the pilot\'s enrolment credential has been revoked')
  }
  const g = pilotGrantOf(deps.policy.current, pilot.rule, pilot.role, pilot.site)
  if (!g) throw new InvalidGrant('the policy in force no longer grants this pilot')
  if (pilot.jobEnd <= now) throw new InvalidGrant('the pilot job has ended')
  const minted = mintPilotToken(pilot, g, now, deps)
  // Whether the presented token was renewed before is asked of the store, never of this process's memory:
  // another replica may have renewed it, or this process before a restart. The store judges and records in
  // one transaction, so two renewals of one token racing on two replicas are judged one after the other.
  const renewed: AuditEvent = { ...minted.event, ...who(ctx, state.caller), type: 'token.renewed', detail: { gen: minted.claims.ctb_gen, slurmJob: pilot.job, replaces: jti, pilot: pilotDetail(pilot) } }
  const named = state as { caller: KnownCaller }
  const outcome = await deps.store.renewPilotToken({ replaces: jti, expires: pilot.jobEnd }, renewed, refusalEvent('renew', named, ctx, now), RENEWAL_REFUSED)
  // An attempt older than the answer already given: refused and recorded, nothing retired, nothing revoked.
  if (!outcome.renewed && outcome.stale) throw new AuditedStaleAttempt(STALE.description)
  if (!outcome.renewed) {
    await revokeLineage(pilot, jti, outcome.successor, ctx, deps)
    throw new AuditedRefusal(REUSED.description)
  }
  deps.registry.add(minted.claims.jti, pilot, minted.claims.exp, now, jti, minted.minted)
  return minted.response
}

/** Who the broker names as having revoked a pilot whose token was reused (the record's caller). */
export const REUSE_REVOKER = 'condor-token-broker:pilot-token-reuse'

/**
 * Revokes the identity of a pilot whose token was presented after its successor was in use: both chains of
 * the fork carry that `sub`, as recorded at redemption, so both stop at their next renewal (and, through
 * SEC_TOKEN_REVOCATION_EXPR, at the collector). RFC 9700 §4.14.2: the server cannot tell which party is the
 * legitimate one, so it ends the family.
 */
async function revokeLineage(pilot: PilotRecord, reusedJti: string, successor: string, ctx: RequestContext, deps: PilotExchangeDeps): Promise<void> {
  try {
    await deps.revocations.revoke(
      { kind: 'sub', value: pilot.identity, reason: `pilot token ${reusedJti} reused after its renewal to ${successor}: renewal chain forked` },
      { principal: REUSE_REVOKER, requestId: ctx.requestId, ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}) },
    )
  } catch (err) {
    // The refusal is recorded; the revocation is not. Fail closed and loud: the next presentation of the
    // reused token is judged reuse again and tries again.
    deps.log.error('could not revoke a pilot whose token was reused', { err, requestId: ctx.requestId, identity: pilot.identity })
    // The store out of reach is an outage: 503, and the retry it invites is judged reuse again and revokes.
    if (err instanceof AuditStoreUnavailable) {
      // The refusal is on record and counted; the failure was logged just above.
      err.refusalRecorded = true
      err.logged = true
      throw err
    }
    // Never another BrokerError (a refusal of the request's making): the broker failed, server_error.
    throw new Error('could not revoke a pilot whose token was reused', { cause: err })
  }
}

/**
 * A pilot's IDTOKEN: the grant's pilot levels, `exp` at the earliest of the grant's token lifetime, the
 * broker's IDTOKEN cap and the job's end recorded at redemption. Signed with the key that passed its
 * sign-and-verify self-test when it was loaded (key_self_test.ts), as every exchanged IDTOKEN is: a check
 * after each mint re-ran the same HMAC with the same key and cost ~8 µs per renewal. The caller
 * audits it before it leaves.
 */
function mintPilotToken(pilot: PilotRecord, g: { grant: CompiledGrant; pilot: CompiledPilotGrant }, now: number, deps: PilotExchangeDeps) {
  const lifetime = Math.min(g.pilot.tokenLifetime, g.grant.lifetime.max, deps.maxIdTokenLifetime, pilot.jobEnd - now)
  const levels = g.pilot.tunneled ? PILOT_LEVELS_TUNNELED : PILOT_LEVELS
  const gen = deps.revocations.generationOf(pilot.role)
  const claims = buildIdTokenClaims({
    trustDomain: deps.trustDomain, subject: pilot.identity, authz: levels, lifetimeSeconds: lifetime, now, jti: newJti(now),
    extra: { ctb_role: pilot.role, ctb_gen: gen, ctb_site: pilot.site, [CLAIM_ENROLMENT]: pilot.enrolment, [CLAIM_SLURM_JOB]: pilot.job },
  })
  const token = mintIdToken(claims, deps.idtokenKey)
  // Frozen: the registry hands these very claims to the next renewal as what was signed.
  Object.freeze(claims)
  const sha256 = hash('sha256', token, 'hex')
  const scope = claims.scope ?? ''
  const event: Omit<AuditEvent, 'type'> = {
    time: now, role: pilot.role, tokenKind: 'idtoken', issuedSub: claims.sub, jti: claims.jti,
    scopes: scope.split(' ').filter(Boolean), audience: [], exp: claims.exp, tokenSha256: sha256,
    policyRule: pilot.rule, decision: 'allow', site: pilot.site,
  }
  const response: TokenExchangeResponse = { access_token: token, issued_token_type: TOKEN_TYPE.idtoken, token_type: 'N_A', expires_in: claims.exp - now, scope }
  const minted: MintedPilotToken = { sha256, claims: claims as unknown as Readonly<Record<string, unknown>>, key: deps.idtokenKey }
  return { claims: claims as typeof claims & { ctb_gen: number }, event, response, minted }
}

/** A pilot's authorization levels, parsed once: every pilot token carries the same ones. */
const PILOT_LEVELS = PILOT_AUTHZ.map(parseAuthzLevel)
const PILOT_LEVELS_TUNNELED = [...PILOT_AUTHZ, PILOT_TUNNEL_AUTHZ].map(parseAuthzLevel)

/** An IDTOKEN this broker signed with its current key, or undefined. Payload only: the caller judges the claims. */
function readOwnIdToken(token: string, key: IdTokenKey): Record<string, unknown> | undefined {
  const dot = token.lastIndexOf('.')
  if (!token.startsWith(`${key.encodedHeader}.`) || dot <= key.encodedHeader.length + 1) return undefined
  const signed = token.slice(0, dot)
  if (!hs256Valid(signed, token.slice(dot + 1), key.hmac)) return undefined
  try {
    const c = JSON.parse(Buffer.from(signed.slice(key.encodedHeader.length + 1), 'base64url').toString('utf8')) as unknown
    return c !== null && typeof c === 'object' && !Array.isArray(c) && typeof (c as { sub?: unknown }).sub === 'string' ? c as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

/** The form fields every redemption and renewal shares: the grant, one subject token, nothing delegated. */
function commonParams(form: TokenRequestForm): void {
  for (const k of ['grant_type', 'subject_token', 'subject_token_type', 'requested_token_type', 'slurm_job_id', 'node', 'job_end', 'slurm_restart_count']) one(form, k)
  const grant = one(form, 'grant_type')
  if (!grant) throw new InvalidRequest('grant_type is required')
  if (grant !== GRANT_TYPE_TOKEN_EXCHANGE) throw new UnsupportedGrantType(`grant_type must be ${GRANT_TYPE_TOKEN_EXCHANGE}`)
  if (one(form, 'actor_token') !== undefined) throw new InvalidRequest('delegation not supported: actor_token is not accepted')
  const token = one(form, 'subject_token')
  if (!token) throw new InvalidRequest('subject_token is required')
  if (token.length > MAX_ENROLMENT_CREDENTIAL_BYTES) throw new InvalidRequest(`subject_token is larger than ${MAX_ENROLMENT_CREDENTIAL_BYTES} bytes`)
  const requested = one(form, 'requested_token_type')
  if (requested !== undefined && requested !== TOKEN_TYPE.idtoken) throw new InvalidRequest(`a pilot receives ${TOKEN_TYPE.idtoken} only`)
}

function one(form: TokenRequestForm, name: string): string | undefined {
  const v = form[name]
  // RFC 6749 §3.2: request parameters MUST NOT be included more than once.
  if (Array.isArray(v)) throw new InvalidRequest(`${name} must not be repeated`)
  return v === undefined || v === '' ? undefined : v
}

function who(ctx: RequestContext, caller: KnownCaller): Pick<AuditEvent, 'requestId' | 'caller' | 'clientAddress'> {
  return { requestId: ctx.requestId, caller, ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}) }
}

function denialEvent(err: BrokerError, flow: PilotFlow, state: { caller: KnownCaller; role?: string; site?: string; rule?: string }, ctx: RequestContext, now: number): AuditEvent {
  return { ...refusalEvent(flow, state, ctx, now), reason: reasonOf(err) }
}

/** A pilot request's `token.denied` record but for its reason (a renewal's: the store gives it, RenewalRefusal). */
function refusalEvent(flow: PilotFlow, state: { caller: KnownCaller; role?: string; site?: string; rule?: string }, ctx: RequestContext, now: number): RenewalRefusal {
  return {
    type: 'token.denied', time: now, requestId: ctx.requestId, caller: state.caller,
    ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
    ...(state.role !== undefined ? { role: state.role } : {}),
    ...(state.rule !== undefined ? { policyRule: state.rule } : {}),
    decision: 'deny',
    ...(state.site !== undefined ? { site: state.site } : {}),
    detail: { pilot: flow },
  }
}

/** A denial's `reason` (docs/audit.md): `<oauth error>: <description>`. */
function reasonOf(err: BrokerError): string {
  return `${err.error}: ${err.description}`
}

async function auditRefusal(err: BrokerError, flow: PilotFlow, state: { caller: KnownCaller; role?: string; site?: string; rule?: string }, ctx: RequestContext, deps: PilotExchangeDeps): Promise<void> {
  if (unrecordableRefusal(err, ctx, deps.log, state.caller)) return
  try {
    await deps.store.record(denialEvent(err, flow, state, ctx, deps.clock.now()))
  } catch (storeErr) {
    deps.log.error('could not audit a denial', { err: storeErr, requestId: ctx.requestId, error: err.error })
  }
}
