import type { AuditEvent, AuditStore } from '../audit/audit_log.ts'
import { InvalidRequest, NotFound } from '../errors.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import { CLAIM_ENROLMENT, CLAIM_SLURM_JOB } from '../contract/pilot.ts'
import { isEnrolmentId } from './pilot_enrolment.ts'
import { parsePilotJob } from './pilot_job.ts'
import { buildRevocationExpression, isClassAdSafe } from './condor_expression.ts'
import { INITIAL_GENERATION, jtiEntryEnd, longestLifetime, pastExpProblem, REVOCATION_KINDS, type Revocation, type RevocationKind, type RevocationStore } from './revocation.ts'
import { RevocationSnapshot, type CallerBlock, type CallerBlockSource, type IssuanceBlocks, type RevocationChecker } from './revocation_checker.ts'

/** Roles and sites a revocation may name, from the policies in force (see policy/revocation_labels.ts). */
export interface KnownLabels {
  readonly roles: ReadonlySet<string>
  readonly sites: ReadonlySet<string>
}

export interface RevocationServiceDeps {
  store: RevocationStore & Pick<AuditStore, 'query'>
  clock: Clock
  log: Logger
  /** Longest lifetime of any token the broker issues: after revokedAt + this, a sub/site/role entry matches nothing valid. */
  maxTokenLifetime: number
  /** Re-read revocations this often, so replicas and the CLI see each other's revocations. */
  refreshSeconds: number
  /**
   * The roles and sites the loaded policies define. A role or site revocation must name one of them, or
   * one the audit log has issued a token for (a role dropped from the policy still has live tokens):
   * a typo (`stardt`) would otherwise be stored, listed and pushed to HTCondor while revoking nothing.
   */
  knownLabels: () => KnownLabels
  /** The trusted IAM issuers (the development IAM included): a `sub` or `client` entry may be bound to one. */
  knownIssuers?: () => ReadonlySet<string>
  /**
   * Called once a revocation or lift has committed: `serve` then anchors the audit log soon (revocation_watch.ts),
   * so a copy of the database taken before it and restored later is refused instead of silently undoing it.
   */
  committed?: () => void
}

/** What an admin asks for (HTTP or CLI). */
export interface RevocationRequest {
  kind: RevocationKind
  value: string
  reason?: string
  /** For `jti` only (refused with any other kind): the token's exp, for a token the audit log does not know; an earlier exp than the log's is ignored. */
  exp?: number
  /** For `sub` and `client`: the trusted IAM issuer the value belongs to; absent means at every one. */
  iss?: string
}

/** Who revoked, for the audit record. */
export interface RevocationActor {
  principal: string
  requestId?: string
  clientAddress?: string
}

/**
 * Revocation use cases: revoke (audited in the same transaction), list, render for HTCondor, and the
 * in-memory snapshot the issuance hot path reads role generations from and token acceptors check against.
 * A snapshot a few seconds stale can only over-revoke: a token minted with an old generation is already
 * revoked by the newer one, never the other way round.
 */
export class RevocationService implements RevocationChecker, IssuanceBlocks, CallerBlockSource {
  readonly #deps: RevocationServiceDeps
  #snapshot: RevocationSnapshot
  #timer: NodeJS.Timeout | undefined
  /**
   * The active entries and role generations as last read. The start-up checked the table against the audit
   * chain; after that it is re-read without that check, and rows are never deleted and change only by a
   * lift. So an entry that vanishes (not lifted, not expired) or weakens between two reads, or a generation
   * that drops, was changed behind the broker: it stays in force as held, and the change is logged. Keyed by
   * the whole entry, not its id: SQLite hands a deleted newest row's id to the next revocation (heldKey).
   */
  #held = new Map<string, Revocation>()
  #heldGenerations = new Map<string, number>()
  /** Changes already logged, so a table left tampered with is reported once, not at every refresh. */
  readonly #reported = new Set<string>()
  /**
   * Reads of the table are numbered as they begin; #appliedRead is the number of the one in force (#held, the
   * snapshot). Overlapping reads (a periodic refresh, the re-read after a revoke, `revoke condor`) may finish in
   * any order, and one that began earlier cannot speak for what a later one saw: another replica's lift put back,
   * or the read time of the list in force moved back. The read that began last wins, not the one that ends last.
   */
  #readsBegun = 0
  #appliedRead = 0
  /**
   * Entries this broker lifted, each with the number of the last read begun before its lift. Such a read may still
   * show the entry active and be applied (the re-read after the lift failed, or has not finished): it cannot speak
   * for the entry, which the lift let go of in #held, so it is left out. Pruned once a read begun after applies.
   */
  readonly #liftedHere = new Map<string, number>()

  constructor(deps: RevocationServiceDeps) {
    this.#deps = deps
    this.#snapshot = new RevocationSnapshot([], new Map(), deps.clock.now())
  }

  /** Loads the snapshot; call once before serving. */
  async refresh(): Promise<void> {
    await this.#readActive(this.#deps.clock.now())
  }

  /**
   * The active entries and generations: the table's, with what it lost behind the broker put back (#held).
   * Put in force (#held and the snapshot, read at `now`) unless a read begun after this one already is: then
   * what is in force is answered, newer than this read, with this broker's commits since.
   */
  async #readActive(now: number): Promise<{ revocations: Revocation[]; generations: Map<string, number> }> {
    const readNumber = ++this.#readsBegun
    const [read, gens] = await Promise.all([this.#deps.store.listRevocations({ activeAt: now }), this.#deps.store.roleGenerations()])
    const byId = new Map(read.map((r) => [r.id, r]))
    const changes: string[] = []
    // Held entries the table lost or changed: enforced beside whatever row now has their id (never instead
    // of it: that row may be a new revocation given a deleted row's id).
    const kept: Revocation[] = []
    let all: Map<number, Revocation> | undefined
    /** The entries held when `all` was requested: those it must show. */
    let allAfter: Set<string> | undefined
    let activeAgain: Set<number> | undefined
    let activeAfter: Set<string> | undefined
    const looked = new Set<string>()
    for (const held of this.#held.values()) {
      looked.add(heldKey(held))
      if (held.until < now) continue
      const row = byId.get(held.id)
      if (row && sameEntry(held, row)) continue
      if (!row) {
        // Not active any more: lifted (the row says so) is fine; the whole table is read only then, rarely.
        // Read again for an entry held only since the last read of it began (a revoke of this broker committing
        // meanwhile): that read cannot show it, and "gone from the table" would be a false alarm, reported once,
        // that then hid the same words when the row really went.
        if (!all || (!all.has(held.id) && !allAfter!.has(heldKey(held)))) {
          allAfter = new Set(this.#held.keys())
          all = new Map((await this.#deps.store.listRevocations()).map((r) => [r.id, r]))
        }
        const stored = all.get(held.id)
        if (stored && sameEntry(held, stored)) {
          if (stored.liftedAt === undefined) {
            // Unlifted and as held, yet not in the read of the active ones: either that read began before the
            // entry committed (a revoke overlapping this refresh), or the active read hides a row the whole
            // table shows (an index or view made to disagree: a replica starting now would not enforce it).
            // The whole table was read after the commit, so a second active read must show it unless hidden.
            // Again for an entry held only since that second read began, as for the whole table above.
            if (!activeAgain || (!activeAgain.has(held.id) && !activeAfter!.has(heldKey(held)))) {
              activeAfter = new Set(this.#held.keys())
              activeAgain = new Set((await this.#deps.store.listRevocations({ activeAt: now })).map((r) => r.id))
            }
            if (!activeAgain.has(held.id)) changes.push(`revocation ${held.id} (${held.kind} ${JSON.stringify(held.value)}) is in the table but left out of its active entries`)
            kept.push(held)
          }
          continue
        }
        changes.push(stored ? entryChange(held, stored) : `revocation ${held.id} (${held.kind} ${JSON.stringify(held.value)}) is gone from the table`)
      } else changes.push(entryChange(held, row))
      kept.push(held)
    }
    const generations = new Map(gens)
    let gensAgain: Map<string, number> | undefined
    let gensAfter: Map<string, number> | undefined
    for (const [role, held] of this.#heldGenerations) {
      const gen = gens.get(role)
      if (gen !== undefined && gen >= held) continue
      // A read that began before a role revocation of this broker committed (a revoke overlapping this
      // refresh) has the older generation: read once more, now that the commit is held, before crying tampering.
      // Again for a generation raised only since that read began (another role revocation committing meanwhile).
      const seen = gensAgain?.get(role)
      if (!gensAgain || ((seen === undefined || seen < held) && (gensAfter!.get(role) ?? 0) < held)) {
        gensAfter = new Map(this.#heldGenerations)
        gensAgain = await this.#deps.store.roleGenerations()
      }
      const again = gensAgain.get(role)
      if (again !== undefined && again >= held) { generations.set(role, again); continue }
      changes.push(`role ${role} is at generation ${again ?? 'none'} in the table, ${held} before`)
      generations.set(role, held)
    }
    // What is held now that the loop above never looked at: a revocation of this broker that committed after the
    // loop (while this read waited on the generations) or went into the map another overlapping read put in
    // place of the one iterated here. This read, begun before it, cannot speak for it: replacing #held and the
    // snapshot with it alone dropped a revocation answered as made until the next refresh. Kept, as a role's
    // generation raised meanwhile is (generations never go down); the next read that begins after it judges it.
    const listed = new Set([...read, ...kept].map(heldKey))
    for (const [key, held] of this.#held) if (!looked.has(key) && !listed.has(key) && held.until >= now) kept.push(held)
    for (const [role, held] of this.#heldGenerations) if (held > (generations.get(role) ?? 0)) generations.set(role, held)
    const revocations = [...read, ...kept].filter((r) => (this.#liftedHere.get(heldKey(r)) ?? 0) < readNumber).sort((a, b) => a.id - b.id)
    // Changes found by a read overtaken by a newer one are still reported: the comparison was with what was held,
    // and each check above read the table again before calling anything a change.
    const fresh = changes.filter((c) => !this.#reported.has(c))
    if (fresh.length > 0) {
      for (const c of fresh) this.#reported.add(c)
      this.#deps.log.error('the revocations table changed behind the broker; still enforcing what it held (run "audit verify")', { changes: fresh })
    }
    if (readNumber < this.#appliedRead) {
      return { revocations: [...this.#held.values()].sort((a, b) => a.id - b.id), generations: new Map(this.#heldGenerations) }
    }
    this.#appliedRead = readNumber
    // Any read applied from here on began after this one: after every lift recorded with a smaller number.
    for (const [key, before] of this.#liftedHere) if (before < readNumber) this.#liftedHere.delete(key)
    this.#held = new Map(revocations.map((r) => [heldKey(r), r]))
    this.#heldGenerations = generations
    this.#snapshot = new RevocationSnapshot(revocations, generations, now)
    return { revocations, generations }
  }

  /**
   * Periodic refresh; failures keep the last snapshot and are logged. A tick that finds the previous refresh
   * still waiting on the store skips: on a PostgreSQL server that stopped answering each read holds a pool
   * connection until query_timeout_seconds, and a refresh every few seconds would take the pool from the
   * token requests.
   */
  startAutoRefresh(): void {
    if (this.#timer) return
    let running = false
    this.#timer = setInterval(() => {
      if (running) return
      running = true
      this.refresh()
        .catch((err: unknown) => this.#deps.log.warn('revocation refresh failed; using the previous list', { err }))
        .finally(() => { running = false })
    }, this.#deps.refreshSeconds * 1000)
    this.#timer.unref()
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
  }

  /**
   * The revocations this broker enforces now, by kind, and when they were read from the store: what
   * /metrics reports, from memory. Never a store read, so a scrape neither waits on an audit store that has
   * stopped answering nor holds one of its connections. As fresh as the last refresh: another replica's
   * revocation (or the CLI's) shows after the next one, as it is enforced here.
   */
  inForce(): { byKind: ReadonlyMap<RevocationKind, number>; readAt: number } {
    return { byKind: this.#snapshot.countByKind(this.#deps.clock.now()), readAt: this.#snapshot.readAt }
  }

  /** The generation a token issued now for `role` carries (claim ctb_gen). Synchronous: hot path. */
  generationOf(role: string): number {
    return this.#snapshot.generationOf(role, INITIAL_GENERATION)
  }

  isRevoked(claims: object): boolean {
    return this.#snapshot.isRevoked(claims)
  }

  blockedCaller(caller: { iss?: string | undefined; sub: string; client_id?: string | undefined }): string | undefined {
    return this.#snapshot.blockedCaller(caller)
  }

  blockedIdentity(sub: string): string | undefined {
    return this.#snapshot.blockedIdentity(sub)
  }

  callerBlock(caller: { iss?: string | undefined; sub: string; client_id?: string | undefined }): CallerBlock | undefined {
    return this.#snapshot.callerBlock(caller)
  }

  /**
   * What `revoke` would do, writing nothing: the live (unexpired, not yet revoked) broker-minted tokens
   * the revocation would revoke, found in the audit log. For `client`, the live tokens issued to that
   * client, which a client revocation blocks from renewal but does not revoke.
   */
  async preview(req: RevocationRequest): Promise<{ liveTokens: number }> {
    await this.#validate(req)
    const now = this.#deps.clock.now()
    // An issuer-bound sub is a caller: count what was issued to it (it stays valid, like a client's).
    const filter = req.kind === 'jti' ? { jti: req.value }
      : req.kind === 'sub' ? (req.iss !== undefined ? { caller: req.value } : { issuedSub: req.value })
        : req.kind === 'role' ? { role: req.value }
          : req.kind === 'site' ? { site: req.value }
            : req.kind === 'pilot-job' ? { site: parsePilotJob(req.value)!.site } : {}
    let liveTokens = 0
    let cursor: string | undefined
    // No live token is older than the longest lifetime ever granted, which a lowered maximum does not shorten.
    const from = now - await longestLifetime(this.#deps.store, 'token', this.#deps.maxTokenLifetime)
    // Issued and renewed: a pilot running for longer than one token lifetime holds a token that only its
    // `token.renewed` record names (its first token has expired), and was counted as nothing live.
    // Bounded: each page advances the cursor through a finite window.
    for (const type of ['token.issued', 'token.renewed'] as const) do {
      const page = await this.#deps.store.query({ ...filter, type, from, limit: 1000, ...(cursor ? { cursor } : {}) })
      for (const { event: e } of page.records) {
        if (e.exp === undefined || e.exp <= now || e.tokenKind === 'access_token') continue
        if (req.kind === 'client' && e.caller?.client_id !== req.value) continue
        if (req.kind === 'pilot-job' && `${e.site}:${String((e.detail?.pilot as { job?: unknown } | undefined)?.job)}` !== req.value) continue
        // A pilot group: its pilots' tokens, and its credential, whose redemptions the entry refuses.
        const { enrolment: pilotEnrolment, job } = (e.detail?.pilot ?? {}) as { enrolment?: unknown; job?: unknown }
        const enrolment = e.tokenKind === 'pilot_enrolment' ? e.jti : pilotEnrolment
        if (req.kind === 'pilot-enrolment' && enrolment !== req.value) continue
        if (req.iss !== undefined && e.caller?.iss !== req.iss) continue
        const gen = e.detail?.gen
        // A pilot token's claims as minted (pilot_exchange.ts): its job and enrolment too, so one already revoked
        // by a pilot-job or pilot-enrolment entry is not counted as live (nor a credential revoked as a group).
        const claims = {
          jti: e.jti, sub: e.issuedSub, iat: e.time, ctb_role: e.role, ...(typeof gen === 'number' ? { ctb_gen: gen } : {}), ...(e.site !== undefined ? { ctb_site: e.site } : {}),
          ...(typeof enrolment === 'string' ? { [CLAIM_ENROLMENT]: enrolment } : {}), ...(typeof job === 'string' ? { [CLAIM_SLURM_JOB]: job } : {}),
        }
        if (!this.#snapshot.isRevoked(claims)) liveTokens++
      }
      cursor = page.nextCursor
    } while (cursor !== undefined)
    return { liveTokens }
  }

  /** The audit records of issuing the token `jti` (issued or renewed) and the exp they state, if any. */
  async #recordedJti(jti: string): Promise<{ records: AuditEvent[]; exp: number | undefined }> {
    const found = await Promise.all((['token.issued', 'token.renewed'] as const).map((type) => this.#deps.store.query({ jti, type, limit: 1 })))
    const records = found.flatMap((p) => p.records).map((r) => r.event)
    return { records, exp: records.map((e) => e.exp).find((e) => e !== undefined) }
  }

  async #validate(req: RevocationRequest): Promise<void> {
    if (!REVOCATION_KINDS.includes(req.kind)) throw new InvalidRequest(`revocation kind must be one of ${REVOCATION_KINDS.join(', ')}`)
    // A client entry adds no clause to SEC_TOKEN_REVOCATION_EXPR (our tokens carry no client_id): only what
    // the expression carries must survive HTCondor's config reader, and an IAM client names itself as it likes.
    if (req.kind === 'client' ? !/^[\x20-\x7e]{1,256}$/.test(req.value) : !isClassAdSafe(req.value)) {
      throw new InvalidRequest(req.kind === 'client'
        ? 'client must be 1 to 256 printable ASCII characters'
        : `${req.kind} must be 1 to 256 printable ASCII characters without quotes, backslashes or dollar signs`)
    }
    this.#validateReason(req.reason)
    // exp is one token's: any other kind's entry lasts until every token issued so far has expired, so an exp
    // there was dropped unseen, and whoever meant it as a bound got the longest lifetime instead.
    if (req.exp !== undefined && req.kind !== 'jti') throw new InvalidRequest('exp applies only to jti revocations')
    // An exp already past names a token that has expired, and the entry would revoke nothing: refused, unless the
    // audit log recorded a later exp the token still lives to. Then the exp sent is wrong, not the revocation, and
    // refusing it as "already expired" told whoever was cutting off a live token that there was nothing to cut
    // off; the entry is held until the recorded exp (revoke), which the answer's until shows. Nor for a pilot
    // enrolment credential: its entry also stops the renewals of the pilots it yielded, long after its own exp.
    if (req.exp !== undefined) {
      if (!Number.isSafeInteger(req.exp) || req.exp < 0) throw new InvalidRequest('exp must be whole epoch seconds')
      const now = this.#deps.clock.now()
      const past = pastExpProblem(req.exp, now)
      if (past !== undefined) {
        const { records, exp: recorded } = await this.#recordedJti(req.value)
        const enrolment = records.some((e) => e.tokenKind === 'pilot_enrolment')
        if (!enrolment && (recorded === undefined || pastExpProblem(recorded, now) !== undefined)) throw new InvalidRequest(past)
      }
    }
    if (req.iss !== undefined) {
      if (req.kind !== 'sub' && req.kind !== 'client') throw new InvalidRequest('iss applies only to sub and client revocations')
      const trusted = this.#deps.knownIssuers?.() ?? new Set<string>()
      if (!trusted.has(req.iss)) {
        throw new InvalidRequest(`iss "${isClassAdSafe(req.iss) ? req.iss : '?'}" is not a trusted IAM issuer (trusted: ${[...trusted].sort().join(', ') || 'none'})`)
      }
    }
    if (req.kind === 'pilot-enrolment' && !isEnrolmentId(req.value)) {
      throw new InvalidRequest('pilot-enrolment must be an enrolment credential\'s jti (32 lowercase hex characters), as a provisioning manifest lists it')
    }
    if (req.kind === 'pilot-job') {
      const job = parsePilotJob(req.value)
      if (!job) throw new InvalidRequest('pilot-job must be SITE:JOBID (a site label and a SLURM job id)')
      if (this.#deps.knownLabels().sites.has(job.site)) return
      const seen = await this.#deps.store.query({ site: job.site, type: 'token.issued', limit: 1 })
      if (seen.records.length > 0) return
      throw new InvalidRequest(`unknown site "${job.site}": no policy defines it and no token was issued for it`)
    }
    if (req.kind === 'role' || req.kind === 'site') {
      const known = this.#deps.knownLabels()
      const list = req.kind === 'role' ? known.roles : known.sites
      if (list.has(req.value)) return
      const seen = await this.#deps.store.query({ [req.kind]: req.value, type: 'token.issued', limit: 1 })
      if (seen.records.length > 0) return
      const names = [...list].sort().join(', ') || 'none'
      throw new InvalidRequest(`unknown ${req.kind} "${req.value}": no policy defines it and no token was issued for it (known ${req.kind}s: ${names})`)
    }
  }

  /** Stores a revocation with its audit record (one transaction) and refreshes the snapshot. */
  async revoke(req: RevocationRequest, actor: RevocationActor): Promise<Revocation> {
    await this.#validate(req)
    const now = this.#deps.clock.now()
    // For every kind but jti the store raises this to the latest expiry issued so far (IssuanceHorizon).
    let until = now + this.#deps.maxTokenLifetime
    if (req.kind === 'jti') {
      // A renewal records its token under a jti of its own; a record may also be pruned already, and then
      // the token may be one issued under a longer maximum than today's: held until the horizon.
      const { records, exp: recorded } = await this.#recordedJti(req.value)
      // The exp bound, the fallback and the enrolment hold below may each need the horizon: one store read.
      let horizonRead: number | undefined
      const horizonExp = async () => (horizonRead ??= (await this.#deps.store.issuanceHorizon()).token.exp)
      if (req.exp !== undefined) {
        // Bounded, or a made-up exp would keep the entry in the HTCondor expression for ever; a token issued
        // under a longer maximum lifetime than today's may reach as far as the horizon.
        const horizon = await horizonExp()
        if (req.exp > Math.max(until, horizon)) {
          throw new InvalidRequest(horizon > until
            ? `exp must be at most ${horizon} (the latest exp of a token the broker has issued): no token the broker issued lives longer`
            : `exp must be at most ${until} (now plus the longest token lifetime, ${this.#deps.maxTokenLifetime} s): no token the broker issues lives longer`)
        }
        // Never shorter than what the audit log recorded: an earlier exp (a typo, a hand-edited teardown
        // manifest) would drop the entry, and make the token valid again, while the token still lives.
        until = jtiEntryEnd(Math.max(req.exp, recorded ?? 0), now)
      } else {
        until = recorded !== undefined ? jtiEntryEnd(recorded, now) : Math.max(until, await horizonExp())
      }
      // An enrolment credential's entry also stops the renewals of the pilots it yielded (pilot_exchange.ts),
      // whose tokens outlive the credential (it covers only the queue wait). Held, like a sub or pilot-job
      // entry, until every token issued so far has expired: else its pilots renew again once it lapses.
      if (records.some((e) => e.tokenKind === 'pilot_enrolment')) {
        until = Math.max(until, now + this.#deps.maxTokenLifetime, await horizonExp())
      }
    }
    const event = adminRevocationEvent('token.revoked', now, actor, req, req.reason)
    const rev = await this.#deps.store.revoke({
      kind: req.kind, value: req.value, revokedAt: now, until,
      ...(req.reason ? { reason: req.reason } : {}), revokedBy: actor.principal,
      ...(req.iss !== undefined ? { iss: req.iss } : {}),
    }, event)
    this.#deps.committed?.()
    // Held from its commit, not from the next read of the table: a trigger deleting (or weakening) each new
    // row before that read left an entry answered as made and never enforced.
    this.#held.set(heldKey(rev), rev)
    if (rev.kind === 'role' && rev.gen !== undefined) this.#heldGenerations.set(rev.value, Math.max(rev.gen, this.#heldGenerations.get(rev.value) ?? 0))
    await this.#refreshAfterCommit(`revocation ${rev.id} (${rev.kind} ${JSON.stringify(rev.value)}) committed`)
    return rev
  }

  /**
   * Lifts an entry before its `until`: marks it lifted and writes a `token.unrevoked` record in the same
   * transaction, then refreshes the snapshot. A role revocation cannot be lifted: tokens issued since
   * carry its generation, and lowering the generation would let the next role revocation miss them.
   */
  async lift(id: number, req: { reason?: string }, actor: RevocationActor): Promise<Revocation> {
    this.#validateReason(req.reason)
    const rev = (await this.#deps.store.listRevocations()).find((r) => r.id === id)
    if (!rev) throw new NotFound(`no revocation has id ${id}`)
    if (rev.liftedAt !== undefined) throw new NotFound(`revocation ${id} was already lifted`)
    if (rev.kind === 'role') {
      throw new InvalidRequest(`revocation ${id} revokes role ${rev.value} by generation and cannot be lifted: tokens issued since carry generation ${rev.gen ?? '?'}`)
    }
    const now = this.#deps.clock.now()
    // The entry's kind and value too (and its issuer): a client or pilot entry's record names it nowhere else, and
    // an auditor reading the lift must see what it lifted (audit list's revoked=). liftOfEvent reads only the rest.
    const lift = { id, liftedAt: now, liftedBy: actor.principal, kind: rev.kind, value: rev.value, ...(rev.iss !== undefined ? { iss: rev.iss } : {}) }
    const event = adminRevocationEvent('token.unrevoked', now, actor, rev, req.reason, { lift })
    // Undefined when another lift of the same entry committed first.
    const lifted = await this.#deps.store.lift({ id, liftedAt: now, liftedBy: actor.principal }, event)
    if (!lifted) throw new NotFound(`revocation ${id} was already lifted`)
    this.#deps.committed?.()
    // Let go of it as a refresh would on finding it lifted: not enforced from here on, and not missed by the
    // next read (an entry dropped from #held is not compared with the table). Keyed by the whole entry, so
    // another entry holding the same id (a deleted row's id reused) stays held.
    this.#held.delete(heldKey(lifted))
    this.#liftedHere.set(heldKey(lifted), this.#readsBegun)
    await this.#refreshAfterCommit(`the lift of revocation ${id} (${lifted.kind} ${JSON.stringify(lifted.value)}) committed`)
    return lifted
  }

  /**
   * The re-read after a revocation or lift committed. Its failure (an SQLite lock, a PostgreSQL read cut off)
   * changes nothing of the commit: the caller is answered that it was made (a 503 "nothing was changed"
   * invites a retry that revokes twice, or a lift retried into "already lifted"), and the change is enforced
   * from what is held, which the commit has already updated (#held, #heldGenerations). The next periodic
   * refresh reconciles with the table, comparing it with #held as after any read: the entry applied here is
   * in the table as committed, so no false alarm; a row changed behind the broker is still reported.
   */
  async #refreshAfterCommit(what: string): Promise<void> {
    try {
      await this.refresh()
    } catch (err) {
      const now = this.#deps.clock.now()
      // readAt stays the last read's: /metrics must not report a read of the store that did not happen.
      this.#snapshot = new RevocationSnapshot([...this.#held.values()], this.#heldGenerations, now, this.#snapshot.readAt)
      this.#deps.log.warn(`${what}, but re-reading the revocations failed; enforcing it from memory until the next refresh`, { err })
    }
  }

  #validateReason(reason: string | undefined): void {
    // Well-formed too: a lone surrogate (a JSON body may carry "\ud800") stays in the audit record but a UTF-8
    // text column stores U+FFFD for it, and the consistency check then took the row for one edited behind the
    // broker's back: audit verify failed and the broker refused to start.
    if (reason !== undefined && (reason.length > 500 || /[\x00-\x1f\x7f]/.test(reason) || !reason.isWellFormed())) {
      throw new InvalidRequest('reason must be at most 500 characters of well-formed text without control characters')
    }
  }

  async list(options: { all?: boolean } = {}): Promise<Revocation[]> {
    return this.#deps.store.listRevocations(options.all ? {} : { activeAt: this.#deps.clock.now() })
  }

  /**
   * SEC_TOKEN_REVOCATION_EXPR from a read of the store (not the snapshot), pruned of entries that match nothing
   * valid; from the list in force instead when a read begun after this one finished first (#readActive).
   */
  async condorExpression(): Promise<{ expr: string; clauses: number; unexpressed: number; generatedAt: number }> {
    const now = this.#deps.clock.now()
    const { revocations } = await this.#readActive(now)
    const built = buildRevocationExpression(revocations, now)
    if (built.unexpressed > 0) {
      this.#deps.log.warn('active revocations left out of SEC_TOKEN_REVOCATION_EXPR: their values hold characters HTCondor would read as something else, or are not of their kind\'s shape (a row edited by hand); the broker still refuses what they name', { unexpressed: built.unexpressed })
    }
    return { ...built, generatedAt: now }
  }
}

/** The fields a revocation is stored with; only `liftedAt` and `liftedBy` ever change, by a lift. */
const ENTRY_FIELDS = ['kind', 'value', 'iss', 'revokedAt', 'until', 'gen', 'reason', 'revokedBy'] as const

/** An entry's identity while held: every stored field, so two entries that share an id are both kept. */
function heldKey(r: Revocation): string {
  return JSON.stringify([r.id, ...ENTRY_FIELDS.map((f) => r[f] ?? null)])
}

function sameEntry(a: Revocation, b: Revocation): boolean {
  return ENTRY_FIELDS.every((f) => a[f] === b[f])
}

function entryChange(held: Revocation, row: Revocation): string {
  const what = `revocation ${held.id} (${held.kind} ${JSON.stringify(held.value)})`
  const differ = ENTRY_FIELDS.filter((f) => held[f] !== row[f])
  if (differ.length === 1 && differ[0] === 'until') return `${what} ends at ${row.until} in the table, ${held.until} before`
  return `${what} differs in the table: ${differ.map((f) => `${f} ${JSON.stringify(row[f] ?? null)}, ${JSON.stringify(held[f] ?? null)} before`).join('; ')}`
}

/**
 * The audit record of an admin revoking or lifting the entry `kind value`: who, from where, and the claim
 * the entry names (a pilot job by its site, the whole `SITE:JOBID` in `detail.pilotJob`; a pilot enrolment's jti in
 * `detail.pilotEnrolment`, not `jti`, which names a token revoked by itself).
 */
function adminRevocationEvent(
  type: 'token.revoked' | 'token.unrevoked', now: number, actor: RevocationActor,
  entry: { kind: RevocationKind; value: string }, reason: string | undefined, detail?: Record<string, unknown>,
): AuditEvent {
  const { kind, value } = entry
  const pilotJob = kind === 'pilot-job' ? { pilotJob: value } : kind === 'pilot-enrolment' ? { pilotEnrolment: value } : undefined
  return {
    type,
    time: now,
    caller: { sub: actor.principal },
    ...(actor.requestId ? { requestId: actor.requestId } : {}),
    ...(actor.clientAddress ? { clientAddress: actor.clientAddress } : {}),
    ...(kind === 'jti' ? { jti: value } : {}),
    ...(kind === 'sub' ? { issuedSub: value } : {}),
    ...(kind === 'role' ? { role: value } : {}),
    ...(kind === 'site' ? { site: value } : {}),
    ...(kind === 'pilot-job' ? { site: parsePilotJob(value)?.site } : {}),
    ...(reason ? { reason } : {}),
    ...(detail || pilotJob ? { detail: { ...detail, ...pilotJob } } : {}),
  }
}
