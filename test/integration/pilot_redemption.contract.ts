import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { BrokerStore } from '../../src/storage/chained_store.ts'

/**
 * The redemption count of a pilot enrolment credential, for every backend: each slot is taken at most
 * once however the redemptions race (one process, or two replicas on one database), and each redemption's
 * record (issued or refused) commits with its count or not at all.
 */
export interface RedemptionHarness {
  open(): Promise<BrokerStore>
  /** A second handle on the same database (another replica or process); absent for memory. */
  openPeer?(): Promise<BrokerStore>
}

const T0 = 1_800_000_000

function events(i: number): { issued: AuditEvent; refused: AuditEvent } {
  return {
    issued: { type: 'token.issued', time: T0 + i, requestId: `redeem-${i}`, role: 'pilot', tokenKind: 'idtoken', jti: `pilot-jti-${i}`, decision: 'allow', site: 'hpc-b' },
    refused: { type: 'token.denied', time: T0 + i, requestId: `redeem-${i}`, role: 'pilot', decision: 'deny', reason: 'invalid_grant: used up', site: 'hpc-b' },
  }
}

export function pilotRedemptionContract(name: string, h: RedemptionHarness): void {
  describe(`pilot redemption count: ${name}`, () => {
    const open: BrokerStore[] = []
    const fresh = async (peer = false) => { const s = peer ? await h.openPeer!() : await h.open(); open.push(s); return s }
    afterEach(async () => { for (const s of open.splice(0)) await s.close().catch(() => {}) })

    it('gives slots 1..limit, then refuses, and records each outcome once', async () => {
      const store = await fresh()
      const outcomes = []
      for (let i = 1; i <= 4; i++) {
        const { issued, refused } = events(i)
        outcomes.push(await store.redeemPilotSlot('cred-a', 3, issued, refused))
      }
      expect(outcomes).toEqual([{ redeemed: true, slot: 1 }, { redeemed: true, slot: 2 }, { redeemed: true, slot: 3 }, { redeemed: false, used: 3 }])
      const page = await store.query({ limit: 10 })
      expect(page.records.map((r) => r.event.type).sort()).toEqual(['token.denied', 'token.issued', 'token.issued', 'token.issued'])
      expect((await store.verify()).ok).toBe(true)
      // Another credential has its own count.
      expect(await store.redeemPilotSlot('cred-b', 1, events(9).issued, events(9).refused)).toEqual({ redeemed: true, slot: 1 })
    })

    it('never hands out more slots than the limit to concurrent redemptions', async () => {
      const store = await fresh()
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => store.redeemPilotSlot('cred-race', 5, events(i).issued, events(i).refused)))
      const slots = results.filter((r) => r.redeemed).map((r) => (r as { slot: number }).slot).sort((a, b) => a - b)
      expect(slots).toEqual([1, 2, 3, 4, 5])
      expect(results.filter((r) => !r.redeemed)).toHaveLength(7)
      const denied = await store.query({ type: 'token.denied', limit: 100 })
      expect(denied.records).toHaveLength(7)
    })

    it('keeps the count across replicas of one database', async () => {
      if (!h.openPeer) return
      const a = await fresh()
      const b = await fresh(true)
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? a : b).redeemPilotSlot('cred-peer', 3, events(i).issued, events(i).refused)))
      expect(results.filter((r) => r.redeemed)).toHaveLength(3)
      // The count is durable: a store opened afterwards sees it used up.
      const c = await fresh(true)
      expect(await c.redeemPilotSlot('cred-peer', 3, events(20).issued, events(20).refused)).toEqual({ redeemed: false, used: 3 })
    })
  })
}
