import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { BrokerStore } from '../../src/storage/chained_store.ts'
import type { RenewalRefusal, RenewalRefusalReasons } from '../../src/storage/pilot_renewals.ts'

/**
 * The renewal chain of a pilot token, for every backend (storage/pilot_renewals.ts): a token renewed once is
 * renewed again only as a lost answer's retry (its successor never renewed with), each retry retiring the
 * successor it replaces; anything else is reuse, refused with a record naming the reused jti and its successor. Judged from the store, so it holds for two handles on one
 * database (replicas) and for a store opened again (a restart).
 */
export interface RenewalHarness {
  open(): Promise<BrokerStore>
  /** A second handle on the same database (another replica or process); absent for memory. */
  openPeer?(): Promise<BrokerStore>
}

const T0 = 1_800_000_000
const END = T0 + 7200
let n = 0

/** The reason of each refusal: the store records the one that applies. */
const REASONS: RenewalRefusalReasons = { reused: 'invalid_grant: reused', stale: 'invalid_grant: stale' }

function renewal(replaces: string, successor: string, expires = END, time?: number): { renewal: { replaces: string; expires: number }; renewed: AuditEvent; refused: RenewalRefusal } {
  const i = ++n
  const at = time ?? T0 + i
  return {
    renewal: { replaces, expires },
    renewed: { type: 'token.renewed', time: at, requestId: `renew-${i}`, role: 'pilot', tokenKind: 'idtoken', jti: successor, decision: 'allow', site: 'hpc-b', detail: { replaces } },
    refused: { type: 'token.denied', time: at, requestId: `renew-${i}`, role: 'pilot', decision: 'deny', site: 'hpc-b', detail: { pilot: 'renew' } },
  }
}

async function renew(store: BrokerStore, replaces: string, successor: string, expires = END, time?: number) {
  const r = renewal(replaces, successor, expires, time)
  return store.renewPilotToken(r.renewal, r.renewed, r.refused, REASONS)
}

export function pilotRenewalContract(name: string, h: RenewalHarness): void {
  describe(`pilot renewal chains: ${name}`, () => {
    const open: BrokerStore[] = []
    const fresh = async (peer = false) => { const s = peer ? await h.openPeer!() : await h.open(); open.push(s); return s }
    afterEach(async () => { for (const s of open.splice(0)) await s.close().catch(() => {}) })

    it('renews the newest token, every retry of a renewed one, and refuses reuse naming the successor', async () => {
      const store = await fresh()
      expect(await renew(store, 'a0', 'a1')).toEqual({ renewed: true })
      expect(await renew(store, 'a0', 'a1b')).toEqual({ renewed: true, supersedes: 'a1' })
      expect(await renew(store, 'a0', 'a1c')).toEqual({ renewed: true, supersedes: 'a1b' })
      expect(await renew(store, 'a0', 'a1d')).toEqual({ renewed: true, supersedes: 'a1c' })
      // A retired successor is reuse whenever it comes back.
      expect(await renew(store, 'a1', 'a2')).toEqual({ renewed: false, successor: 'a1b' })
      // The newest goes on; once it has, the token it replaced is reuse.
      expect(await renew(store, 'a1d', 'a2d')).toEqual({ renewed: true })
      expect(await renew(store, 'a0', 'a1e')).toEqual({ renewed: false, successor: 'a1d' })
      const records = (await store.query({ limit: 100 })).records.map((r) => r.event).reverse()
      expect(records.map((e) => e.type)).toEqual(['token.renewed', 'token.renewed', 'token.renewed', 'token.renewed', 'token.denied', 'token.renewed', 'token.denied'])
      expect(records[1]!.detail).toEqual({ replaces: 'a0', supersedes: 'a1' })
      expect(records[4]!.detail).toEqual({ pilot: 'renew', reuse: { jti: 'a1', successor: 'a1b' } })
      expect(records[6]!.detail).toEqual({ pilot: 'renew', reuse: { jti: 'a0', successor: 'a1d' } })
      expect((await store.verify()).ok).toBe(true)
    })

    // A pilot's attempt minted at t1 and held up before its commit (the store's queue, the chain-head lock on a
    // busy replica) past curl's --max-time; the pilot retries, and the retry, minted later, commits first. The
    // late first attempt is no retry of a lost answer: the pilot already has a later one. Judged a retry, it
    // retired the successor the pilot holds, and the pilot's next renewal revoked it.
    it('refuses an attempt minted before the answer already given, retiring nothing', async () => {
      const store = await fresh()
      expect(await renew(store, 'g0', 'g1-retry', END, T0 + 5_100)).toEqual({ renewed: true })
      expect(await renew(store, 'g0', 'g1-first', END, T0 + 5_060)).toEqual({ renewed: false, successor: 'g1-retry', stale: true })
      // What the pilot holds was not retired: its chain goes on.
      expect(await renew(store, 'g1-retry', 'g2', END, T0 + 5_200)).toEqual({ renewed: true })
      const last = (await store.query({ limit: 100 })).records.sort((a, b) => a.seq - b.seq).map((r) => r.event)
      expect(last.map((e) => e.type)).toEqual(['token.renewed', 'token.denied', 'token.renewed'])
      expect(last[1]).toMatchObject({ reason: 'invalid_grant: stale', detail: { pilot: 'renew', stale: { jti: 'g0', successor: 'g1-retry' } } })
      // An attempt minted after the latest answer is a retry again; one minted before that retry's is stale.
      expect(await renew(store, 'h0', 'h1', END, T0 + 6_000)).toEqual({ renewed: true })
      expect(await renew(store, 'h0', 'h1b', END, T0 + 6_040)).toEqual({ renewed: true, supersedes: 'h1' })
      expect(await renew(store, 'h0', 'h1c', END, T0 + 6_020)).toEqual({ renewed: false, successor: 'h1b', stale: true })
      expect(await renew(store, 'h1b', 'h2', END, T0 + 6_100)).toEqual({ renewed: true })
    })

    // docs/audit.md, `detail`: a reused pilot token's refusal is `{pilot: "renew", reuse: {jti, successor}}`, a
    // late attempt's `{pilot: "renew", stale: {jti, successor}}`; every other field is the refusal as given.
    it('records a refusal as given, completed with the presented jti and its successor and nothing else', async () => {
      const store = await fresh()
      expect(await renew(store, 'k0', 'k1', END, T0 + 8_000)).toEqual({ renewed: true })
      expect(await renew(store, 'k1', 'k2', END, T0 + 8_100)).toEqual({ renewed: true })
      expect(await renew(store, 'k0', 'k1x', END, T0 + 8_200)).toEqual({ renewed: false, successor: 'k1' })
      const reusedBy = `renew-${n}`
      expect(await renew(store, 'k2', 'k3', END, T0 + 8_300)).toEqual({ renewed: true })
      expect(await renew(store, 'k2', 'k3-first', END, T0 + 8_250)).toEqual({ renewed: false, successor: 'k3', stale: true })
      const staleBy = `renew-${n}`
      const denied = (await store.query({ type: 'token.denied', limit: 100 })).records.sort((a, b) => a.seq - b.seq).map((r) => r.event)
      expect(denied).toEqual([
        { type: 'token.denied', time: T0 + 8_200, requestId: reusedBy, role: 'pilot', decision: 'deny', reason: 'invalid_grant: reused', site: 'hpc-b', detail: { pilot: 'renew', reuse: { jti: 'k0', successor: 'k1' } } },
        { type: 'token.denied', time: T0 + 8_250, requestId: staleBy, role: 'pilot', decision: 'deny', reason: 'invalid_grant: stale', site: 'hpc-b', detail: { pilot: 'renew', stale: { jti: 'k2', successor: 'k3' } } },
      ])
      expect((await store.verify()).ok).toBe(true)
    })

    it('takes no refusal that states its own reason: which reason applies is the transaction\'s to decide', async () => {
      const store = await fresh()
      const r = renewal('r0', 'r1')
      const given = { ...r.refused, reason: 'invalid_grant: reused' } as unknown as RenewalRefusal
      await expect(store.renewPilotToken(r.renewal, r.renewed, given, REASONS)).rejects.toThrow(TypeError)
      // Nothing was judged or recorded: the token is still the pilot's newest.
      expect(await renew(store, 'r0', 'r1')).toEqual({ renewed: true })
      expect((await store.query({ limit: 10 })).records).toHaveLength(1)
    })

    it('refuses a retry once the successor was renewed with', async () => {
      const store = await fresh()
      expect(await renew(store, 'b0', 'b1')).toEqual({ renewed: true })
      expect(await renew(store, 'b1', 'b2')).toEqual({ renewed: true })
      expect(await renew(store, 'b0', 'b1x')).toEqual({ renewed: false, successor: 'b1' })
    })

    it('judges racing renewals of one token one after the other: one renewal, the others retries', async () => {
      const store = await fresh()
      const results = await Promise.all(['c1', 'c2', 'c3'].map((s) => renew(store, 'c0', s)))
      expect(results.filter((r) => r.renewed && r.supersedes === undefined)).toHaveLength(1)
      expect(results.filter((r) => r.renewed && r.supersedes !== undefined)).toHaveLength(2)
    })

    it('drops at retention the rows of pilots whose job has ended, and only those', async () => {
      const store = await fresh()
      const later = END + 86_400
      expect(await renew(store, 'e0', 'e1')).toEqual({ renewed: true })
      expect(await renew(store, 'f0', 'f1', later)).toEqual({ renewed: true })
      expect(await renew(store, 'f1', 'f2', later)).toEqual({ renewed: true })
      // Every record is older than `before`; the prune runs after END, before `later`.
      expect((await store.prune(T0 + 10_000, END + 1)).pruned).toBeGreaterThan(0)
      // e0's row is gone (its chain can no longer present a valid token); f0's is kept.
      expect(await renew(store, 'e0', 'e1x')).toEqual({ renewed: true })
      expect(await renew(store, 'f0', 'f1x', later)).toEqual({ renewed: false, successor: 'f1' })
    })

    it('holds across two handles on one database, and for a handle opened afterwards', async () => {
      if (!h.openPeer) return
      const a = await fresh()
      const b = await fresh(true)
      expect(await renew(a, 'd0', 'd1')).toEqual({ renewed: true })
      expect(await renew(b, 'd1', 'd2')).toEqual({ renewed: true })
      expect(await renew(a, 'd0', 'd1x')).toEqual({ renewed: false, successor: 'd1' })
      const c = await fresh(true)
      expect(await renew(c, 'd1', 'd2x')).toEqual({ renewed: true, supersedes: 'd2' })
      expect(await renew(c, 'd2', 'd3')).toEqual({ renewed: false, successor: 'd2x' })
    })
  })
}
