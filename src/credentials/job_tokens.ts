import { hash } from 'node:crypto'
import type { AuditLog } from '../audit/audit_log.ts'
import { providerOfCredential } from '../contract/job_credentials.ts'
import { AccessDenied, BrokerError, CredentialGone, InvalidGrant, InvalidScope, InvalidTarget, TemporarilyUnavailable } from '../errors.ts'
import type { VerifiedSubject } from '../iam/subject.ts'
import type { IamTokenExchanger } from '../iam/outbound_exchange.ts'
import { callerOf, issueToken, type IssueDeps } from '../issuance/issue.ts'
import type { Clock } from '../lib/clock.ts'
import { SingleFlight } from '../lib/keyed_promises.ts'
import type { Logger } from '../lib/logger.ts'
import { creddMayFetch, policyForCredd, policyForVault, vaultMayRead } from '../policy/credd_fetch.ts'
import { decide } from '../policy/decide.ts'
import type { Policy } from '../policy/compile.ts'
import type { Decision } from '../policy/decision.ts'
import type { IssuanceBlocks, RevocationChecker } from '../revocation/revocation_checker.ts'
import type { CreddPrincipal } from './credd_auth.ts'
import type { CredentialStore, StoredCredential } from './credential_store.ts'
import type { CredentialProvider } from './credentials_config.ts'
import { refusedRefresh, revokedByIam, type Confirmation, type IamRecheck } from './iam_recheck.ts'
import { renewedCaller } from './iam_recheck_grant.ts'
import { credentialKey } from './sealed_refresh_tokens.ts'
import { unverifiedJwtExp } from '../lib/jwt_payload.ts'

/** What the caller asks for; every field optional on the wire. */
export interface JobTokenRequest {
  user: string
  /** The credential's name: the provider, or `<provider>_<handle>`. */
  provider: string
  /** Reuse a cached token only if it has at least this many seconds left. */
  minimumSeconds?: number
  /** A subset of the registered scopes; default all of them. */
  scopes?: string[]
  /** A subset of the registered audience; default all of it. */
  audience?: string[]
}

export interface JobToken {
  accessToken: string
  /** Epoch seconds. */
  exp: number
  scope: string
  /** A minted token's claims, so a cached one can be checked against revocations made since. */
  claims?: object
  /**
   * The HTCondor identity the policy decided the token for: an IAM access token carries no claims of ours,
   * so this is what a cached one is checked against (an identity revoked since gets it no more).
   */
  identity?: string
  /**
   * Kind iam: the scopes IAM was asked for, as the policy decided them. After a reload the cached token is
   * handed on only if the policy in force decides the same scopes and identity.
   */
  asked?: string[]
}

export interface JobTokenDeps {
  store: CredentialStore
  /** Where refreshed tokens are recorded (the store, seen by the metrics when they are on). */
  audit: AuditLog
  providers: () => readonly CredentialProvider[]
  policy: () => Policy
  /** The exchanger whose refresh-token store is the sealed credential table. */
  exchanger: Pick<IamTokenExchanger, 'refresh'>
  /** IAM's confirmation of a scitoken-kind credential's user, renewed every recheck interval. */
  recheck: Pick<IamRecheck, 'confirm' | 'forget'>
  issue: IssueDeps
  /** Revoked callers and identities get nothing; a revoked cached token is not handed on. */
  blocks: IssuanceBlocks & Pick<RevocationChecker, 'isRevoked'>
  clock: Clock
  /** Where a refusal whose record could not be written is told. */
  log: Logger
  defaultMinimumSeconds: number
}

type RequestContext = { requestId: string; credd?: CreddPrincipal; clientAddress?: string }

/** What is known of a refused request when it is refused: what its token.denied record says. */
interface RefusalFacts {
  provider?: CredentialProvider
  /** Whose credential the refusal is about, when it was found: the caller of the record without a credd. */
  subject?: VerifiedSubject
  scopes?: string[]
  audience?: string[]
  detail?: Record<string, unknown>
}

/** Cached tokens per (credential, scopes, audience, credd role and site); stale ones are swept past this many entries. */
const SWEEP_AT = 10_000
/**
 * On the Vault-compatible listener the bearer is the `.top`'s Vault token, which the user's own storer
 * received: a token obtained this recently is handed out again whatever `minimum_seconds` asks (a new one
 * would outlive it by at most this much), so its holder cannot make every read a refresh at IAM or a mint,
 * each with its audit record. The credd route's bearer is an access point's daemon and keeps the plain rule.
 */
export const VAULT_REUSE_SECONDS = 60

/**
 * A token as cached: which registration it came from (createdAt), when it was obtained, the provider
 * role's revocation generation when it was asked for (an IAM access token carries no `ctb_gen` of ours, and
 * a role revocation is a reset: a token from before it is not handed on), and the digest of the policy it
 * was decided under (a reload that changes the policy is a reset too: the token was decided by rules no
 * longer in force, which may have mapped the user to another identity or granted more than they do now).
 */
interface CachedToken { token: JobToken; stamp: number; obtainedAt: number; generation: number; policyDigest: string }

/** A refreshed or minted token, and the digest of the policy that decided it (what it is cached under). */
interface Obtained { token: JobToken; decidedUnder: string }

/**
 * Fresh tokens for jobs: an IAM access token refreshed with the user's stored refresh token, or a
 * SciToken/WLCG token minted under policy for the user the credential was registered to. A token with
 * at least `minimumSeconds` of life left is reused (Vault's `minimum_seconds`), and concurrent requests
 * for the same credential share one refresh (single flight), so a thousand jobs of one user cost one IAM
 * call. The credential row is read on every request, so a revocation takes effect at once, cache or not.
 * Every refreshed or minted token is audited before it is cached or returned (fail closed).
 */
export class JobTokens {
  readonly #deps: JobTokenDeps
  readonly #cache = new Map<string, CachedToken>()
  readonly #inflight = new SingleFlight<JobToken>()

  constructor(deps: JobTokenDeps) {
    this.#deps = deps
  }

  async token(req: JobTokenRequest, ctx: RequestContext): Promise<JobToken> {
    // A credd no grant of the provider's role names learns nothing, not even whether the credential exists.
    // req.provider names the credential: the provider, or `<provider>_<handle>`.
    const provider = this.#deps.providers().find((p) => p.name === providerOfCredential(req.provider))
    if (ctx.credd && provider) await this.#creddAllowed(ctx.credd, provider, req, ctx)
    const cred = await this.#deps.store.readCredential(req.user, req.provider)
    const known = { ...(provider ? { provider } : {}), ...(cred ? { subject: JSON.parse(cred.subjectJson) as VerifiedSubject } : {}) }
    // Gone for good (the answer says so: a credmon ends the .top and the next submit registers again).
    if (!cred) throw await this.#refused(new CredentialGone('unknown', 'no credential is registered for this user and provider; register it (condor_submit)'), req, ctx, known)
    if (cred.revoked) throw await this.#refused(new CredentialGone('revoked', 'this credential has been revoked; register again (condor_submit)'), req, ctx, known)
    if (!provider || provider.kind !== cred.kind) throw await this.#refused(new AccessDenied('the provider of this credential is no longer configured'), req, ctx, known)
    // Before the cache: a revoked user gets nothing more, whichever kind, cached or not.
    const subject = JSON.parse(cred.subjectJson) as VerifiedSubject
    const blocked = this.#deps.blocks.blockedCaller(subject)
    if (blocked) throw await this.#refused(new AccessDenied(blocked), req, ctx, known)
    if (ctx.credd) await this.#creddAllowed(ctx.credd, provider, req, ctx, subject)
    // The Vault-compatible read has no credd to check: the grant must allow Vault reads (fetched_by.vault_reads)
    // in a rule that matches the user, in the policy in force, so a reload that withdraws it stops the reads
    // of credentials registered before.
    else {
      const verdict = vaultMayRead(this.#deps.policy(), provider.role, subject)
      if (!verdict.allow) throw await this.#refused(new AccessDenied(verdict.reason), req, ctx, known)
    }
    let scopes: string[]
    let audience: string[]
    try {
      scopes = subset(req.scopes, cred.scopes, 'scope', (m) => new InvalidScope(m), isGroupScope)
      audience = subset(req.audience, cred.audience, 'audience', (m) => new InvalidTarget(m))
    } catch (err) {
      throw err instanceof BrokerError ? await this.#refused(err, req, ctx, { ...known, ...(req.scopes ? { scopes: req.scopes } : {}), ...(req.audience ? { audience: req.audience } : {}) }) : err
    }
    // Per credd role and site too: each is decided under the grants that name it, and is not handed a
    // token decided under another's.
    const fetcher = ctx.credd ? `${ctx.credd.role}\n${ctx.credd.site ?? ''}` : ''
    const key = `${credentialKey(cred.user, cred.provider)}\n${scopes.join(' ')}\n${audience.join(' ')}\n${fetcher}`
    const min = req.minimumSeconds ?? this.#deps.defaultMinimumSeconds
    const now = this.#deps.clock.now()
    const cached = this.#cache.get(key)
    // Registered afresh since it was cached: the cached token may carry the old grant. A token with no
    // life left is never reused, whatever the minimum: `expires_in: 0` is no token to a credmon.
    const lasts = (c: CachedToken) => c.token.exp - now >= Math.max(min, 1)
      || (ctx.credd === undefined && c.token.exp - now >= 1 && now - c.obtainedAt < VAULT_REUSE_SECONDS)
    const generation = this.#deps.issue.generations.generationOf(provider.role)
    // The policy in force now: a token cached under another is decided again. A reload that leaves the
    // files as they were keeps the digest, and the cache.
    const policyDigest = this.#deps.policy().digest
    if (cached && lasts(cached) && cached.stamp === cred.createdAt && cached.generation >= generation && !this.#revokedSince(cached.token)) {
      if (cached.policyDigest === policyDigest) return cached.token
      // Decided under a policy since replaced. Kind iam is decided again here, without asking IAM: if the
      // policy in force asks IAM for the same scopes and names the same identity, the cached token is what a
      // refresh would hand out, and every credential's next read after a reload is not a refresh at IAM.
      // Otherwise (and always for kind scitoken, whose mint is local) it is obtained afresh, which refuses
      // and records what the policy no longer grants.
      if (cred.kind === 'iam' && this.#sameIamDecision(cached.token, subject, provider, scopes, audience, ctx)) {
        cached.policyDigest = policyDigest
        return cached.token
      }
    }
    // The digest in the flight's key too: a request after a reload does not wait on, and take, a token
    // that an earlier request is obtaining under the policy the reload replaced.
    return this.#inflight.run(`${key}\n${policyDigest}`, () => this.#obtain(cred, subject, provider, scopes, audience, ctx).then(({ token: t, decidedUnder }) => {
      // The generation read before the refresh: a reset while it ran over-revokes (the next request
      // refreshes again), never the reverse. Tagged with the digest of the policy that decided it, not the
      // one read above: a mint decides after IAM's confirmation, and a reload in between would otherwise
      // tag a token with a policy that did not decide it, handed on if that policy is put back.
      this.#remember(key, { token: t, stamp: cred.createdAt, obtainedAt: this.#deps.clock.now(), generation, policyDigest: decidedUnder })
      return t
    }))
  }

  /**
   * Whether a cached token was revoked after it was obtained: by its claims (a SciToken's jti, sub, role
   * generation), or by the identity it was decided for (an IAM access token, whose claims are IAM's). Such a
   * token is obtained afresh instead, which refuses it and puts the refusal on record.
   */
  #revokedSince(t: JobToken): boolean {
    if (t.claims && this.#deps.blocks.isRevoked(t.claims)) return true
    return t.identity !== undefined && this.#deps.blocks.blockedIdentity(t.identity) !== undefined
  }

  /**
   * The policy in force (read per request, so a reload applies at once) must let this credd fetch for the
   * provider's role, and for the user when `subject` is known; a refusal is 403 and one `token.denied` record.
   */
  async #creddAllowed(credd: CreddPrincipal, provider: CredentialProvider, req: JobTokenRequest, ctx: RequestContext, subject?: VerifiedSubject): Promise<void> {
    const verdict = creddMayFetch(this.#deps.policy(), provider.role, { role: credd.role, ...(credd.site !== undefined ? { site: credd.site } : {}) }, subject)
    if (verdict.allow) return
    throw await this.#refused(new AccessDenied(verdict.reason), req, ctx, { provider })
  }

  /**
   * The policy in force, as this fetch is decided under it: a credd's, only the grants whose fetched_by names
   * it; a Vault read's, only the grants that allow Vault reads.
   */
  #policyFor(provider: CredentialProvider, ctx: RequestContext): Policy {
    const policy = this.#deps.policy()
    return ctx.credd ? policyForCredd(policy, provider.role, { role: ctx.credd.role, ...(ctx.credd.site !== undefined ? { site: ctx.credd.site } : {}) }) : policyForVault(policy, provider.role)
  }

  /**
   * Puts a refusal on record as token.denied (the credential, the caller, the reason) and returns it to be
   * thrown. Best effort, as every denial's record: a store that cannot take it is logged, and the refusal
   * is answered all the same; it never becomes a token, nor a 500 that a credmon would retry.
   */
  async #refused(err: BrokerError, req: Pick<JobTokenRequest, 'user' | 'provider'>, ctx: RequestContext, facts: RefusalFacts): Promise<BrokerError> {
    const { credd } = ctx
    const caller = credd ? { iss: credd.iss, sub: credd.sub } : facts.subject ? callerOf(facts.subject) : undefined
    const p = facts.provider
    try {
      await this.#deps.audit.record({
        type: 'token.denied', time: this.#deps.clock.now(), requestId: ctx.requestId,
        ...(caller ? { caller } : {}),
        ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
        ...(p ? { role: p.role, tokenKind: p.kind === 'iam' ? 'access_token' as const : 'scitoken' as const } : {}),
        ...(facts.scopes ? { scopes: facts.scopes } : {}), ...(facts.audience ? { audience: facts.audience } : {}),
        decision: 'deny', reason: `${err.error}: ${err.description}`,
        detail: {
          credential: { user: req.user, provider: req.provider },
          ...(credd ? { credd: creddDetail(credd) } : {}),
          ...facts.detail,
        },
      })
    } catch (e) {
      this.#deps.log.error('could not record a job-token refusal', { err: e instanceof Error ? e : undefined, requestId: ctx.requestId, user: req.user, provider: req.provider })
    }
    return err
  }

  /** Drops cached tokens of one credential (revocation, re-registration). */
  forget(user: string, provider: string): void {
    this.#dropCached(user, provider)
    this.#deps.recheck.forget(user, provider)
  }

  #dropCached(user: string, provider: string): void {
    const prefix = `${credentialKey(user, provider)}\n`
    for (const k of this.#cache.keys()) if (k.startsWith(prefix)) this.#cache.delete(k)
  }

  /**
   * A SciToken for a scitoken-kind credential: IAM confirms the user first (when the last confirmation is
   * older than the recheck interval), then the policy decides on the claims IAM confirmed. A refusal after
   * the credential was found is recorded as token.denied, except IAM's refusal of the refresh token,
   * which its credential.revoked record already tells.
   */
  async #mint(cred: StoredCredential, provider: CredentialProvider, scopes: string[], audience: string[], ctx: RequestContext): Promise<Obtained> {
    const credential = { user: cred.user, provider: cred.provider }
    const credd = ctx.credd ? { credd: creddDetail(ctx.credd) } : {}
    let confirmation: Confirmation | undefined
    try {
      confirmation = await this.#deps.recheck.confirm(cred)
      const subject = confirmation.subject
      const policy = this.#policyFor(provider, ctx)
      const d = decide(policy, { subject: renewedCaller(subject), role: provider.role, tokenKind: 'scitoken', audience, scopes })
      if (!d.allow) throw new AccessDenied(`the policy no longer grants this credential: ${d.reason}`)
      // The token goes to this user's .use: one naming another HTCondor user would hand their name to these jobs.
      if (!namesUser(d.identity, cred.user)) throw new AccessDenied(NOT_THIS_USER)
      const blocked = this.#deps.blocks.blockedIdentity(d.identity)
      if (blocked) throw new AccessDenied(blocked)
      const detail = { credential, via: 'mint', ...credd, iamCheck: { confirmedAt: confirmation.confirmedAt, outcome: confirmation.outcome } }
      const r = await issueToken(d, { requestId: ctx.requestId, caller: subject, detail, ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}) }, this.#deps.issue)
      return { token: { accessToken: r.token, exp: r.claims.exp, scope: r.scope, claims: r.claims, identity: d.identity }, decidedUnder: policy.digest }
    } catch (err) {
      // Refused on what IAM now says or the policy in force: a token cached for another scope set of this
      // credential was minted on what the broker has just learnt no longer holds, and is not handed on.
      // The IAM confirmation stays: it is what the next request is decided on.
      if (err instanceof AccessDenied) this.#dropCached(cred.user, cred.provider)
      if (err instanceof AccessDenied && !revokedByIam(err)) {
        // The user whose credential IAM was asked about is the caller here; the credd is named in the detail.
        throw await this.#refused(err, credential, { requestId: ctx.requestId, ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}) }, {
          provider, subject: confirmation?.subject ?? JSON.parse(cred.subjectJson) as VerifiedSubject, scopes, audience,
          detail: { ...credd, ...(confirmation ? { iamCheck: { confirmedAt: confirmation.confirmedAt, outcome: confirmation.outcome } } : {}) },
        })
      }
      throw err
    }
  }

  async #obtain(cred: StoredCredential, subject: VerifiedSubject, provider: CredentialProvider, scopes: string[], audience: string[], ctx: RequestContext): Promise<Obtained> {
    const caller = ctx.credd ? { iss: ctx.credd.iss, sub: ctx.credd.sub } : { iss: cred.iss, sub: cred.sub }
    if (cred.kind === 'scitoken') return this.#mint(cred, provider, scopes, audience, ctx)
    if (!cred.sealed || cred.clientId === undefined) {
      // A live row with no refresh token to refresh, or none the broker's client could use: only a new
      // registration can serve this user again, which the answer says (not "IAM could not be asked").
      throw await this.#refused(new CredentialGone('outdated', 'this credential holds no IAM refresh token the broker can use; register again (condor_submit, or condor-token-broker credential-storer --force)'), cred, ctx, { provider, subject, scopes, audience })
    }
    // As a SciToken's mint, each refresh is the policy's call in force now (a reload applies at the next
    // request, cached token or not): IAM would grant what the registration obtained, whatever the grant has
    // become since.
    const { asked, d, decidedUnder } = this.#iamDecision(subject, provider, scopes, audience, ctx)
    const refusal = !d.allow ? `the policy no longer grants this credential: ${d.reason}`
      : !namesUser(d.identity, cred.user) ? NOT_THIS_USER
      : this.#deps.blocks.blockedIdentity(d.identity)
    if (refusal) throw await this.#refused(new AccessDenied(refusal), cred, ctx, { provider, subject, scopes, audience })
    let got
    try {
      got = await this.#deps.exchanger.refresh(credentialKey(cred.user, cred.provider), { scopes: asked, audience })
    } catch (err) {
      // IAM refused the refresh token (expired, revoked there): the credential is gone for good, and its
      // credential.revoked record tells the refusal. Refused without asking IAM (the row went meanwhile,
      // no broker client at that IAM any more), or IAM narrowed short: on record as token.denied.
      const refusal = err instanceof InvalidGrant ? refusedRefresh(err, 'IAM could not be asked for this credential') : err
      if (revokedByIam(refusal)) throw refusal
      if (refusal instanceof BrokerError && refusal.status < 500) {
        throw await this.#refused(refusal, cred, ctx, { provider, subject, scopes, audience })
      }
      throw err
    }
    const now = this.#deps.clock.now()
    const exp = got.expiresIn !== undefined ? now + got.expiresIn : unverifiedJwtExp(got.accessToken)
    // RFC 6749 §5.1: expires_in is only RECOMMENDED. Without it or a JWT exp the token's life is unknown,
    // and a credmon told `expires_in: 0` would refuse the answer and never refresh: IAM answered badly.
    if (exp === undefined || exp <= now) throw new TemporarilyUnavailable('IAM did not say how long the refreshed access token lives; try again later')
    await this.#deps.audit.record({
      type: 'token.issued', time: now, requestId: ctx.requestId, caller,
      ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
      role: provider.role, tokenKind: 'access_token', issuedSub: cred.sub,
      scopes: got.scopes, audience: got.audience, exp, tokenSha256: hash('sha256', got.accessToken, 'hex'), decision: 'allow',
      detail: { credential: { user: cred.user, provider: cred.provider }, via: 'iam-refresh' },
    })
    return { token: { accessToken: got.accessToken, exp, scope: got.scopes.join(' '), asked, ...(d.allow ? { identity: d.identity } : {}) }, decidedUnder }
  }

  /**
   * The policy's decision for a kind-iam refresh, and the scopes IAM is to be asked for. IAM may add
   * `wlcg.groups` beside a `wlcg.groups:/g` the registration asked for (WLCG §2.2; the exchange accepts it),
   * so the row may hold it though the policy never granted it. Decided first as stored; if that is refused,
   * without it, and then IAM is not asked for it either: what the broker asks IAM for is always what the
   * policy in force grants, and IAM adding it again is IAM's doing, as at registration.
   */
  #iamDecision(subject: VerifiedSubject, provider: CredentialProvider, scopes: string[], audience: string[], ctx: RequestContext): { asked: string[]; d: Decision; decidedUnder: string } {
    const policy = this.#policyFor(provider, ctx)
    let asked = scopes
    let d = decide(policy, { subject, role: provider.role, tokenKind: 'access_token', audience, scopes })
    if (!d.allow && scopes.includes('wlcg.groups') && scopes.some((x) => x.startsWith('wlcg.groups:'))) {
      asked = scopes.filter((x) => x !== 'wlcg.groups')
      d = decide(policy, { subject, role: provider.role, tokenKind: 'access_token', audience, scopes: asked })
    }
    return { asked, d, decidedUnder: policy.digest }
  }

  /**
   * Whether the policy in force would have a refresh ask IAM for what `token` was asked for, for the same
   * identity (which must still name the user and not be revoked): then `token` is what the refresh would
   * obtain. Anything else, a refusal included, is left to a refresh, which decides again and records it.
   */
  #sameIamDecision(token: JobToken, subject: VerifiedSubject, provider: CredentialProvider, scopes: string[], audience: string[], ctx: RequestContext): boolean {
    if (token.asked === undefined || token.identity === undefined) return false
    const { asked, d } = this.#iamDecision(subject, provider, scopes, audience, ctx)
    return d.allow && d.identity === token.identity && asked.join(' ') === token.asked.join(' ')
  }

  #remember(key: string, t: CachedToken): void {
    if (this.#cache.size >= SWEEP_AT) {
      const now = this.#deps.clock.now()
      for (const [k, v] of this.#cache) if (v.token.exp <= now) this.#cache.delete(k)
    }
    this.#cache.set(key, t)
  }
}

/** The credd as every job-token record names it in `detail.credd`, issued or refused. */
function creddDetail(credd: CreddPrincipal): { sub: string; role: string; site?: string } {
  return { sub: credd.sub, role: credd.role, ...(credd.site !== undefined ? { site: credd.site } : {}) }
}

const NOT_THIS_USER = 'the policy no longer maps this credential\'s IAM user to its HTCondor user'

/**
 * Whether a decision's identity still names the HTCondor user the credential is stored under: the part
 * before "@", as registration took it.
 */
function namesUser(identity: string, user: string): boolean {
  return identity.slice(0, Math.max(0, identity.lastIndexOf('@'))) === user
}


/**
 * The asked values in the registration's order, whatever order they were asked in: a scope or audience
 * list is a set (RFC 6749 §3.3), and the result is part of the cache key, so "a b" and "b a" must be one
 * entry. Otherwise each order would be a token of its own, and a Vault token's holder could make every
 * read a refresh at IAM, each with its audit record, by permuting the list.
 *
 * Except among the values `ordered` picks (group scopes): IAM lists a token's groups in the order they
 * were asked and a relying party takes the first as the job's, so their order is part of the question.
 * They keep the asked order, in the slots the registration gives them; every other value keeps its place.
 */
function subset(asked: string[] | undefined, registered: string[], what: string, error: (m: string) => BrokerError, ordered: (v: string) => boolean = () => false): string[] {
  if (asked === undefined || asked.length === 0) return [...registered]
  const extra = asked.filter((s) => !registered.includes(s))
  if (extra.length > 0) throw error(`${what} not registered for this credential: ${extra.join(' ')}`)
  const inRegistrationOrder = [...new Set(registered.filter((s) => asked.includes(s)))]
  const inAskedOrder = [...new Set(asked.filter(ordered))]
  return inRegistrationOrder.map((s) => ordered(s) ? inAskedOrder.shift()! : s)
}

/** A group scope (WLCG §2.2: `wlcg.groups:/g`), whose order among its kind IAM keeps in the token. */
function isGroupScope(scope: string): boolean {
  return scope.startsWith(GROUP_SCOPE_PREFIX)
}

const GROUP_SCOPE_PREFIX = 'wlcg.groups:'

