import { pilotEnrolmentOf } from './pilot_enrolment.ts'
import { pilotJobKeyOf } from './pilot_job.ts'
import { activeCutoffs, CLAIM_GENERATION, inForce, CLAIM_ROLE, CLAIM_SITE, REVOCATION_KINDS, type ActiveCutoffs, type Revocation, type RevocationKind } from './revocation.ts'

/** Decides whether a token the broker itself is asked to accept (renewal, admin call) has been revoked. */
export interface RevocationChecker {
  /** `claims` is the verified JWT payload. Same semantics as the generated SEC_TOKEN_REVOCATION_EXPR. */
  isRevoked(claims: object): boolean
}

/** Why the broker must not serve a caller or mint an identity, or undefined. Safe to show the caller. */
export interface IssuanceBlocks {
  /**
   * An active `sub` or `client` revocation of this IAM caller, whatever its token's `iat` (IAM keeps
   * issuing fresh tokens to a revoked caller, so a cut-off by time would let the next one through).
   */
  blockedCaller(caller: { iss?: string | undefined; sub: string; client_id?: string | undefined }): string | undefined
  /** An active `sub` revocation not bound to an IAM issuer, of the identity a decision would issue. */
  blockedIdentity(sub: string): string | undefined
}

/** A blocked caller with the entry that blocks it: for explaining a refusal to an admin, who may see revocation ids. */
export interface CallerBlock {
  /** Always found while blockedCaller and this read the same entries; absent, the caller is refused all the same. */
  revocation?: Revocation
  /** What the token endpoint answers (IssuanceBlocks.blockedCaller). */
  reason: string
}

/** Names the entry behind a caller block (policy explain); slower than blockedCaller, off the hot path. */
export interface CallerBlockSource {
  callerBlock(caller: { iss?: string | undefined; sub: string; client_id?: string | undefined }): CallerBlock | undefined
}

/**
 * An immutable, indexed view of the active revocations: O(1) per check, so it can sit on hot paths.
 * Mirrors buildRevocationExpression clause by clause.
 */
export class RevocationSnapshot implements RevocationChecker, IssuanceBlocks, CallerBlockSource {
  readonly #jtis: ReadonlySet<string>
  readonly #subs: ReadonlyMap<string, number>
  readonly #sites: ReadonlyMap<string, number>
  readonly #clients: ReadonlySet<string>
  readonly #pilotJobs: ReadonlySet<string>
  readonly #pilotEnrolments: ReadonlySet<string>
  readonly #atIssuer: ActiveCutoffs['atIssuer']
  /**
   * From the role_generations table, not from role revocations: a generation stays in force after the
   * revocation entry that raised it has expired.
   */
  readonly #roles: ReadonlyMap<string, number>
  /** The active `sub` and `client` entries, by id: which one blocks a caller (callerBlock). */
  readonly #callerEntries: readonly Revocation[]
  /** Every entry in force when read: counted at scrape time (countByKind), without a store read. */
  readonly #entries: readonly Revocation[]
  /** When the entries were read from the store (epoch seconds). */
  readonly readAt: number

  /** `readAt` differs from `now` only for entries applied from memory after a commit whose re-read failed. */
  constructor(revocations: readonly Revocation[], roleGenerations: ReadonlyMap<string, number>, now: number, readAt = now) {
    const { jtis, subs, sites, clients, atIssuer, pilotJobs, pilotEnrolments } = activeCutoffs(revocations, now)
    this.#entries = revocations.filter((r) => inForce(r, now))
    this.readAt = readAt
    this.#callerEntries = revocations.filter((r) => (r.kind === 'sub' || r.kind === 'client') && inForce(r, now)).sort((a, b) => a.id - b.id)
    this.#pilotJobs = pilotJobs
    this.#pilotEnrolments = pilotEnrolments
    this.#atIssuer = atIssuer
    this.#jtis = jtis
    this.#subs = subs
    this.#sites = sites
    this.#clients = clients
    this.#roles = new Map(roleGenerations)
  }

  isRevoked(payload: object): boolean {
    const claims = payload as Readonly<Record<string, unknown>>
    const { jti, sub, iat } = claims
    if (typeof jti === 'string' && this.#jtis.has(jti)) return true
    if (this.#pilotJobs.size > 0) {
      const job = pilotJobKeyOf(claims)
      if (job !== undefined && this.#pilotJobs.has(job)) return true
    }
    if (this.#pilotEnrolments.size > 0) {
      const enrolment = pilotEnrolmentOf(claims)
      if (enrolment !== undefined && this.#pilotEnrolments.has(enrolment)) return true
    }
    // A token without a numeric iat cannot prove it predates a cut-off: treat as revoked (HTCondor does the same: UNDEFINED ⇒ revoked).
    const issuedBefore = (cutoff: number | undefined) => cutoff !== undefined && (typeof iat !== 'number' || iat <= cutoff)
    if (typeof sub === 'string' && issuedBefore(this.#subs.get(sub))) return true
    if (typeof sub === 'string' && typeof claims.iss === 'string' && issuedBefore(this.#atIssuer.get(claims.iss)?.subs.get(sub))) return true
    const site = claims[CLAIM_SITE]
    if (typeof site === 'string' && issuedBefore(this.#sites.get(site))) return true
    const role = claims[CLAIM_ROLE]
    if (typeof role === 'string') {
      const current = this.#roles.get(role)
      const gen = claims[CLAIM_GENERATION]
      if (current !== undefined && (typeof gen !== 'number' || gen < current)) return true
    }
    return false
  }

  blockedCaller(caller: { iss?: string | undefined; sub: string; client_id?: string | undefined }): string | undefined {
    const at = caller.iss !== undefined ? this.#atIssuer.get(caller.iss) : undefined
    if (this.#subs.has(caller.sub) || at?.subs.has(caller.sub)) return 'this caller has been revoked'
    if (caller.client_id !== undefined && (this.#clients.has(caller.client_id) || at?.clients.has(caller.client_id))) return `client ${caller.client_id} has been revoked`
    return undefined
  }

  blockedIdentity(sub: string): string | undefined {
    return this.#subs.has(sub) ? `identity ${sub} has been revoked` : undefined
  }

  /**
   * The verdict of blockedCaller, with the entry behind it: a `sub` entry before a `client` one, as
   * blockedCaller's reason names the caller before its client; the lowest id among several.
   */
  callerBlock(caller: { iss?: string | undefined; sub: string; client_id?: string | undefined }): CallerBlock | undefined {
    const reason = this.blockedCaller(caller)
    if (reason === undefined) return undefined
    const atIssuer = (r: Revocation) => r.iss === undefined || r.iss === caller.iss
    const revocation = this.#callerEntries.find((r) => r.kind === 'sub' && r.value === caller.sub && atIssuer(r))
      ?? this.#callerEntries.find((r) => r.kind === 'client' && r.value === caller.client_id && atIssuer(r))
    // Both read the same entries, so one is found; should they ever part, the caller is still refused (fail closed).
    return revocation ? { revocation, reason } : { reason }
  }

  /**
   * The entries still in force at `now`, by kind, every kind present (0 included). An entry whose `until`
   * passed since the read is left out, as isRevoked no longer matches by it either.
   */
  countByKind(now: number): Map<RevocationKind, number> {
    const counts = new Map<RevocationKind, number>(REVOCATION_KINDS.map((k) => [k, 0]))
    for (const r of this.#entries) if (inForce(r, now)) counts.set(r.kind, (counts.get(r.kind) ?? 0) + 1)
    return counts
  }

  /** The generation new tokens of `role` must carry. */
  generationOf(role: string, initial: number): number {
    return this.#roles.get(role) ?? initial
  }
}
