import type { AuditEvent, AuditStore } from '../audit/audit_log.ts'

/** One pilot as redemption recorded it: what renewal keeps, never taking a new word from the pilot. */
export interface PilotRecord {
  /** The pilot token's `sub` (site, enrolment, job and node). */
  identity: string
  site: string
  job: string
  node: string
  /** Epoch seconds the job ends, as stated at redemption: no token of this pilot outlives it. */
  jobEnd: number
  role: string
  /** The rule whose pilot grant issued it. */
  rule: string
  /** The enrolment credential's id. */
  enrolment: string
  redeemedAt: number
  /** SLURM_RESTART_COUNT at redemption: which run of the job this pilot is (0 the first). */
  restart: number
}

/** `detail.pilot` of the records of a pilot token (redemption and renewal): how a renewal finds its pilot. */
export function pilotDetail(p: PilotRecord): Record<string, unknown> {
  return { site: p.site, job: p.job, node: p.node, jobEnd: p.jobEnd, rule: p.rule, enrolment: p.enrolment, redeemedAt: p.redeemedAt, restart: p.restart }
}

/** The pilot a recorded event names, if it is a pilot token's record. */
export function pilotOfEvent(e: AuditEvent): PilotRecord | undefined {
  const d = e.detail?.pilot as Record<string, unknown> | undefined
  if ((e.type !== 'token.issued' && e.type !== 'token.renewed') || !d || e.issuedSub === undefined || e.role === undefined) return undefined
  const { site, job, node, jobEnd, rule, enrolment, redeemedAt, restart } = d
  if (typeof site !== 'string' || typeof job !== 'string' || typeof node !== 'string' || typeof rule !== 'string' || typeof enrolment !== 'string') return undefined
  if (typeof jobEnd !== 'number' || typeof redeemedAt !== 'number') return undefined
  // Records from before requeues were recorded carry no restart: those pilots were first runs.
  return { identity: e.issuedSub, site, job, node, jobEnd, role: e.role, rule, enrolment, redeemedAt, restart: typeof restart === 'number' ? restart : 0 }
}

/**
 * What the broker knows of a pilot token it minted in this process: its claims exactly as signed, and the
 * key that signed them. A presented token whose SHA-256 is that of such a token is that token, byte for
 * byte, so its claims need neither the HMAC check nor decoding again (docs/performance.md).
 */
export interface MintedPilotToken {
  /** SHA-256 of the token, hex (the audit record's tokenSha256). */
  sha256: string
  claims: Readonly<Record<string, unknown>>
  /** The signing key it was minted with: a token of a key no longer in force is not vouched for. */
  key: object
}

interface Entry { pilot: PilotRecord; exp: number; minted?: MintedPilotToken }

/**
 * Pilot tokens by `jti`: the ones this process minted, from memory, else from the audit log (a token minted
 * by another replica, or before a restart). A token is a pilot's only if its issue was recorded with the
 * pilot's details; the log is the authority, memory only spares the lookup.
 */
export class PilotRegistry {
  readonly #store: Pick<AuditStore, 'query'>
  readonly #byJti = new Map<string, Entry>()
  /** SHA-256 (hex) of each token in #byJti that carries its minted claims → its jti. */
  readonly #byHash = new Map<string, string>()
  #sweepAt = 0

  constructor(store: Pick<AuditStore, 'query'>) {
    this.#store = store
  }

  /**
   * Notes a pilot token just recorded (after its audit record committed). A renewal names the token it
   * `replaces`, which leaves memory: a pilot renews with its newest token, so a chain of renewals keeps one
   * entry per node rather than one per renewal until expiry. The replaced token is still found by lookup()
   * (its record is in the log); whether it may be renewed again (a lost answer's retry) or is reused is for
   * the store to say (storage/pilot_renewals.ts), never this memory, which knows nothing of what other
   * replicas renewed. `minted`: the token as this process signed it, for mintedToken().
   */
  add(jti: string, pilot: PilotRecord, exp: number, now: number, replaces?: string, minted?: MintedPilotToken): void {
    if (replaces !== undefined) this.#forget(replaces)
    this.#forget(jti)
    this.#byJti.set(jti, minted ? { pilot, exp, minted } : { pilot, exp })
    if (minted) this.#byHash.set(minted.sha256, jti)
    // Bounded: expired tokens can never be renewed, so they leave at the next sweep.
    if (now >= this.#sweepAt) {
      for (const [k, v] of this.#byJti) if (v.exp <= now) this.#forget(k)
      this.#sweepAt = now + 60
    }
  }

  #forget(jti: string): void {
    const e = this.#byJti.get(jti)
    if (!e) return
    this.#byJti.delete(jti)
    if (e.minted) this.#byHash.delete(e.minted.sha256)
  }

  /** Pilot tokens held in memory (the rest are found in the log). */
  get size(): number {
    return this.#byJti.size
  }

  /**
   * Pilots with an unexpired token in memory, by site: one entry per pilot, since a renewal replaces its
   * predecessor. Only what this process minted or renewed; the audit log (pilot_list.ts) has them all.
   */
  liveBySite(now: number): Map<string, number> {
    const out = new Map<string, number>()
    for (const { pilot, exp } of this.#byJti.values()) if (exp > now) out.set(pilot.site, (out.get(pilot.site) ?? 0) + 1)
    return out
  }

  /**
   * The newest token of a pilot as this process minted it with `key`, found by the SHA-256 of the
   * presented token; undefined for any other token (which then takes the signature check and lookup()).
   */
  mintedToken(sha256: string, key: object): { claims: Readonly<Record<string, unknown>>; pilot: PilotRecord } | undefined {
    const jti = this.#byHash.get(sha256)
    const e = jti === undefined ? undefined : this.#byJti.get(jti)
    if (!e?.minted || e.minted.sha256 !== sha256 || e.minted.key !== key) return undefined
    return { claims: e.minted.claims, pilot: e.pilot }
  }

  async lookup(jti: string): Promise<PilotRecord | undefined> {
    const hit = this.#byJti.get(jti)
    if (hit) return hit.pilot
    const page = await this.#store.query({ jti, limit: 10 })
    for (const r of page.records) {
      const p = r.event.jti === jti ? pilotOfEvent(r.event) : undefined
      if (p) return p
    }
    return undefined
  }
}
