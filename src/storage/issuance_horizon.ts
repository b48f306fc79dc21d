import type { AuditColumns } from '../audit/chain.ts'
import type { IssuanceHorizon, NewRevocation } from '../revocation/revocation.ts'

/**
 * The issuance horizon (revocation.ts) as the backends keep it: one row beside the chain, raised in the
 * transaction that appends the records it follows, so a revocation in a later op of the same or a later
 * batch sees every earlier issuance. It only ever grows; raising it costs one statement when a batch
 * brings a later expiry or a longer lifetime, about once a second under load.
 */

/** The records whose `exp` is the end of something the broker handed out and may have to revoke. */
export const HORIZON_TYPES: ReadonlySet<string> = new Set(['token.issued', 'token.renewed', 'certificate.issued'])

/** SQL expression of HORIZON_TYPES for the migrations that seed the row from an existing log. */
export const HORIZON_TYPES_SQL = [...HORIZON_TYPES].map((t) => `'${t}'`).join(', ')

export const NO_HORIZON: IssuanceHorizon = { exp: 0, lifetime: 0 }

/**
 * Follows one backend's appends. `known` is a value the row is at least at (it only grows, so a value
 * another process raised it past since is merely stale, never wrong); `batch` what this transaction's
 * records reach so far.
 */
export class HorizonTracker {
  #known: IssuanceHorizon
  #batch: IssuanceHorizon = NO_HORIZON

  constructor(known: IssuanceHorizon = NO_HORIZON) {
    this.#known = known
  }

  /** At a transaction's start. */
  begin(): void {
    this.#batch = NO_HORIZON
  }

  observe(cols: AuditColumns): void {
    const exp = cols.exp
    if (typeof exp !== 'number' || !HORIZON_TYPES.has(cols.type)) return
    const lifetime = Math.max(0, exp - cols.time)
    if (exp > this.#batch.exp || lifetime > this.#batch.lifetime) {
      this.#batch = { exp: Math.max(exp, this.#batch.exp), lifetime: Math.max(lifetime, this.#batch.lifetime) }
    }
  }

  /** The latest expiry this transaction has appended so far (0 if none). */
  get batchExp(): number {
    return this.#batch.exp
  }

  /** What the row must be raised to before the commit, or undefined when it already is at least there. */
  raise(): IssuanceHorizon | undefined {
    const b = this.#batch
    return b.exp > this.#known.exp || b.lifetime > this.#known.lifetime ? b : undefined
  }

  /** After the commit: what the row now is at least. (After a rollback, nothing: `begin` drops the batch.) */
  committed(): void {
    const b = this.#batch
    this.#known = { exp: Math.max(b.exp, this.#known.exp), lifetime: Math.max(b.lifetime, this.#known.lifetime) }
    this.#batch = NO_HORIZON
  }
}

/**
 * The `until` a revocation is stored with: for every kind but `jti` (whose `until` is its one token's
 * expiry), at least the latest expiry of anything issued before it, so the entry stays in force while a
 * token or certificate issued under a longer maximum lifetime than today's is still valid.
 */
export function revocationUntil(rev: NewRevocation, horizonExp: number): number {
  return rev.kind === 'jti' ? rev.until : Math.max(rev.until, horizonExp)
}
