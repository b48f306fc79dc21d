import type { AuditEvent } from '../audit/audit_log.ts'
import { EXP_SKEW_SECONDS } from '../contract/revocation_exp.ts'

/**
 * Revocation vocabulary. Every token the broker issues carries three plain scalar claims so HTCondor's
 * SEC_TOKEN_REVOCATION_EXPR (docs/htcondor-tokens.md §2.4: only scalar payload claims are visible, names must be
 * ClassAd identifiers, hence no dots) can match them:
 *   ctb_role  the policy role the token was issued for
 *   ctb_gen   the role's revocation generation at issue time; revoking a role bumps it, so a bulk
 *             revocation is one comparison `ctb_role =?= "r" && ctb_gen < N` however many tokens it hits
 *   ctb_site  the site the policy grant binds (never a request parameter), when it binds one
 */
export const CLAIM_ROLE = 'ctb_role'
export const CLAIM_GENERATION = 'ctb_gen'
export const CLAIM_SITE = 'ctb_site'

/** A role's generation before its first revocation. */
export const INITIAL_GENERATION = 1

/**
 * By `jti`: one token. By `sub`, `site`: every token issued before the revocation. By `role`: every token
 * of an older generation. By `client`: an IAM client (`client_id`) as a caller; it matches none of our
 * tokens (they carry no client_id), so it only blocks. By `pilot-job` and `pilot-enrolment`: every pilot
 * token of one SLURM job at a site, or of one enrolment (pilot_job.ts, pilot_enrolment.ts), whatever its `iat`.
 *
 * Blocking: while a `sub` or `client` entry is in force, the broker also issues nothing new to a caller
 * with that IAM `sub`/`client_id`, nor a token whose identity is that `sub`, and refuses such a caller
 * at the admin API, whatever its token's `iat`: IAM keeps minting fresh tokens for a revoked caller. A
 * `role` or `site` entry does not block: new tokens carry the new generation or a later `iat`.
 */
export type RevocationKind = 'jti' | 'sub' | 'role' | 'site' | 'client' | 'pilot-job' | 'pilot-enrolment'
export const REVOCATION_KINDS: readonly RevocationKind[] = ['jti', 'sub', 'role', 'site', 'client', 'pilot-job', 'pilot-enrolment']

/** How a revocation id is written where an operator names one (`revoke lift ID`, DELETE /v1/revocations/ID): a positive integer a store can hold exactly. */
export const REVOCATION_ID = /^[1-9]\d{0,14}$/

/**
 * A jti revocation's `exp` may lie up to EXP_SKEW_SECONDS in the past (60 s, the skew the pool CA and the IAM token
 * checks allow too): a daemon whose clock lags the broker's may still take the token, so the entry is taken and
 * held until the allowance has passed (jtiEntryEnd). Beyond it, the token has expired everywhere and the entry
 * would revoke nothing.
 */
export { EXP_SKEW_SECONDS }

/**
 * Why `exp` cannot be a jti revocation's at `now`, or undefined: one rule for the admin API, the console and the
 * CLI (the service applies it), so none of them stores an entry that has already ended.
 */
export function pastExpProblem(exp: number, now: number): string | undefined {
  if (exp >= now - EXP_SKEW_SECONDS) return undefined
  return `exp ${exp} is more than ${EXP_SKEW_SECONDS} s in the past (the clock skew allowed): the token has already expired, so the entry would revoke nothing`
}

/**
 * When a jti entry whose token expires at `exp` (the later of the exp sent and the one recorded) ends: a token
 * already expired at `now` is held until a clock lagging the broker's by the skew allowance has also passed its
 * exp (HTCondor judges exp on its own clock, with no allowance). Whether the exp came in the request or from the
 * audit log makes no difference to the daemons.
 */
export function jtiEntryEnd(exp: number, now: number): number {
  return exp < now ? exp + EXP_SKEW_SECONDS : exp
}

/** What the service asks a store to persist. */
export interface NewRevocation {
  kind: RevocationKind
  value: string
  /** Epoch seconds. Tokens of this sub/site with `iat <= revokedAt` are revoked. */
  revokedAt: number
  /** Epoch seconds after which no token this entry matches can still be valid; then it leaves the expression. */
  until: number
  reason?: string
  /** Who revoked (admin principal), for the record. */
  revokedBy?: string
  /**
   * For `sub` and `client`: the trusted IAM issuer the value belongs to. Absent: that `sub` or client at
   * every trusted issuer (and, for `sub`, the broker-minted identity of that name).
   */
  iss?: string
}

export interface Revocation extends NewRevocation {
  id: number
  /** For `role`: the generation now current; tokens with `ctb_gen` below it are revoked. */
  gen?: number
  /** Set when the entry was lifted before its `until`: from then on it matches nothing. */
  liftedAt?: number
  liftedBy?: string
}

/** Lifting an entry: who and when (the reason goes to the audit record). */
export interface RevocationLift {
  id: number
  liftedAt: number
  liftedBy?: string
}

/** Revocations live next to the audit log so the revocation and its audit record commit in one transaction. */
export interface RevocationStore {
  /**
   * Persists the revocation (for a role, bumps its generation) and appends `event` (completed with the
   * revocation's id and generation in `detail`) in the same transaction.
   */
  revoke(rev: NewRevocation, event: AuditEvent): Promise<Revocation>
  /**
   * Marks an entry lifted and appends `event` (a `token.unrevoked` record) in the same transaction.
   * Resolves undefined, writing nothing, when no entry has that id or it is already lifted.
   */
  lift(lift: RevocationLift, event: AuditEvent): Promise<Revocation | undefined>
  /** All revocations (lifted ones too), or only those in force: `until >= activeAt` and not lifted; oldest first. */
  listRevocations(options?: { activeAt?: number }): Promise<Revocation[]>
  /** Current generation per role that was ever revoked; other roles are at INITIAL_GENERATION. */
  roleGenerations(): Promise<Map<string, number>>
  /** How far what the broker has issued reaches (IssuanceHorizons). */
  issuanceHorizon(): Promise<IssuanceHorizons>
}

/**
 * The latest `exp` and the longest lifetime (`exp` minus issue time) of what the broker has issued, over
 * the whole life of the store (pruning the log does not lower it). The configured maximum lifetimes cannot
 * stand in for it: once an admin lowers one, what was issued under the old maximum stays valid for its own
 * lifetime. Both 0 before the first issuance.
 */
export interface IssuanceHorizon {
  exp: number
  lifetime: number
}

/**
 * Tokens (issued and renewed) and host certificates apart: a revocation stays in force at least until the
 * token horizon's `exp` (the store raises `until` to it when it records one), and reads of what may still
 * be valid reach back the matching `lifetime` at least; the CRL holds certificates by the certificate one.
 */
export interface IssuanceHorizons {
  token: IssuanceHorizon
  certificate: IssuanceHorizon
}

/**
 * How far back something of `kind` that may still be valid was issued: the configured maximum, or the
 * longest lifetime ever granted if that is longer (a maximum lowered since does not shorten what was issued
 * under the old one).
 */
export async function longestLifetime(store: Pick<RevocationStore, 'issuanceHorizon'>, kind: keyof IssuanceHorizons, configured: number): Promise<number> {
  return Math.max(configured, (await store.issuanceHorizon())[kind].lifetime)
}

/** What the unexpired revocations cut off: whole roles up to a generation, and per sub / site the latest cut-off time. */
export interface ActiveCutoffs {
  jtis: Set<string>
  subs: Map<string, number>
  sites: Map<string, number>
  /** IAM client ids blocked as callers. */
  clients: Set<string>
  /** Issuer-bound entries: per issuer, the sub cut-offs and the blocked client ids there. */
  atIssuer: Map<string, { subs: Map<string, number>; clients: Set<string> }>
  /** Highest revoked generation per role named by an unexpired role revocation. */
  roles: Map<string, number>
  /** `SITE:JOBID` of revoked pilot jobs (pilot_job.ts). */
  pilotJobs: Set<string>
  /** jtis of revoked pilot enrolments (pilot_enrolment.ts). */
  pilotEnrolments: Set<string>
}

/**
 * Whether `r` is in force at `now`: not lifted, and not expired (`until` inclusive). Written as "not before
 * now" so that an `until` that is no number keeps the entry in force (fail closed).
 */
export function inForce(r: Revocation, now: number): boolean {
  return !(r.until < now) && r.liftedAt === undefined
}

/**
 * Folds revocations still in force at `now` into cut-offs: the one reading behind both the HTCondor
 * expression (condor_expression.ts) and the broker's own check (revocation_checker.ts).
 */
export function activeCutoffs(revocations: readonly Revocation[], now: number): ActiveCutoffs {
  const out: ActiveCutoffs = { jtis: new Set(), subs: new Map(), sites: new Map(), clients: new Set(), roles: new Map(), atIssuer: new Map(), pilotJobs: new Set(), pilotEnrolments: new Set() }
  const at = (iss: string) => {
    let e = out.atIssuer.get(iss)
    if (!e) out.atIssuer.set(iss, e = { subs: new Map(), clients: new Set() })
    return e
  }
  const latest = (m: Map<string, number>, k: string, v: number) => m.set(k, Math.max(m.get(k) ?? 0, v))
  for (const r of revocations) {
    if (!inForce(r, now)) continue
    switch (r.kind) {
      case 'jti': out.jtis.add(r.value); break
      case 'sub': latest(r.iss !== undefined ? at(r.iss).subs : out.subs, r.value, r.revokedAt); break
      case 'site': latest(out.sites, r.value, r.revokedAt); break
      case 'role': latest(out.roles, r.value, r.gen ?? 0); break
      case 'client': (r.iss !== undefined ? at(r.iss).clients : out.clients).add(r.value); break
      case 'pilot-job': out.pilotJobs.add(r.value); break
      case 'pilot-enrolment': out.pilotEnrolments.add(r.value); break
    }
  }
  return out
}
