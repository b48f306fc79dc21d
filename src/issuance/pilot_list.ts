import type { AuditStore } from '../audit/audit_log.ts'
import { longestLifetime, type RevocationStore } from '../revocation/revocation.ts'
import { pilotOfEvent } from './pilot_registry.ts'

/** One live pilot (a node of a SLURM job) as the ops view shows it. */
export interface LivePilot {
  site: string
  job: string
  node: string
  identity: string
  role: string
  /**
   * The enrolment credential's jti the pilot redeemed: its cluster's pilot group. A SLURM job id is unique within
   * one SLURM cluster only, so two clusters' pilots at one site may share job and node: the enrolment tells them apart.
   */
  enrolment: string
  /** Which run of the job (SLURM_RESTART_COUNT at redemption): the newest one that redeemed on this node. */
  restart: number
  redeemedAt: number
  /** The latest renewal, if any. */
  lastRenewedAt?: number
  renewals: number
  /** `exp` of its newest token. */
  exp: number
  jobEnd: number
}

/** How far back a live token may have been issued (seconds): see liveWindow. */
export type LiveWindow = () => Promise<number>

/** How far back live tokens and pilots are looked for: the longest token lifetime, configured or granted. */
export function liveWindow(store: Pick<RevocationStore, 'issuanceHorizon'>, configured: number): LiveWindow {
  return () => longestLifetime(store, 'token', configured)
}

/**
 * Pilots with an unexpired token, by site, job and node, read from the audit log's redemption and renewal
 * records of the last `window` seconds (the longest token lifetime: nothing older can be live).
 */
export async function listLivePilots(store: Pick<AuditStore, 'query'>, now: number, window: number, filter: { site?: string } = {}): Promise<LivePilot[]> {
  // One entry per run of a node (site, job, node, restart): runs are told apart before liveness is judged.
  const byRun = new Map<string, LivePilot>()
  for (const type of ['token.issued', 'token.renewed'] as const) {
    let cursor: string | undefined
    // Bounded: each page moves the cursor back through a finite time window.
    do {
      const page = await store.query({ type, from: now - window, limit: 1000, ...(filter.site ? { site: filter.site } : {}), ...(cursor ? { cursor } : {}) })
      for (const { event: e } of page.records) {
        const p = pilotOfEvent(e)
        if (!p || e.exp === undefined) continue
        const key = `${p.site}\0${p.enrolment}\0${p.job}\0${p.node}\0${p.restart}`
        const cur = byRun.get(key)
          ?? { site: p.site, job: p.job, node: p.node, identity: p.identity, role: p.role, enrolment: p.enrolment, restart: p.restart, redeemedAt: p.redeemedAt, renewals: 0, exp: 0, jobEnd: p.jobEnd }
        cur.exp = Math.max(cur.exp, e.exp)
        if (type === 'token.renewed') {
          cur.renewals++
          cur.lastRenewedAt = Math.max(cur.lastRenewedAt ?? 0, e.time)
        }
        byRun.set(key, cur)
      }
      cursor = page.nextCursor
    } while (cursor !== undefined)
  }
  // A requeued job's node shows its newest live run: an older run's startd is normally gone with it. Liveness is
  // judged first, since the restart count is the pilot's word: a higher one whose token lapsed (a failed run, or
  // anyone holding the credential stating it) must not hide a run that is still renewing.
  const byNode = new Map<string, LivePilot>()
  for (const run of byRun.values()) {
    if (run.exp <= now) continue
    const key = `${run.site}\0${run.enrolment}\0${run.job}\0${run.node}`
    const seen = byNode.get(key)
    if (!seen || run.restart > seen.restart) byNode.set(key, run)
  }
  return [...byNode.values()]
    .sort((a, b) => (a.site < b.site ? -1 : a.site > b.site ? 1 : a.job < b.job ? -1 : a.job > b.job ? 1 : a.node < b.node ? -1 : a.node > b.node ? 1 : a.enrolment < b.enrolment ? -1 : 1))
}
