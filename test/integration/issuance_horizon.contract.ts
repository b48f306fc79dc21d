import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { BrokerStore } from '../../src/storage/chained_store.ts'

/**
 * The issuance horizons for every backend: the latest expiry and the longest lifetime of the tokens and of
 * the certificates the broker issued, kept beside the chain, and the floor the token one puts under a
 * revocation's `until`. The expected values
 * are read off the events the test writes.
 */
export interface HorizonHarness {
  /** A new, empty store. */
  open(): Promise<BrokerStore>
  /** A second handle on the same database (another replica or process); absent for memory. */
  openPeer?(): Promise<BrokerStore>
  /**
   * Takes the database of the store last opened (closed by then) back to the schema before the horizon
   * table, as a database written by the previous version is; absent for memory.
   */
  rewind?(): Promise<void>
  /** Reopens the database of the store last opened. */
  reopen?(): Promise<BrokerStore>
  /**
   * Appends a token.issued row to the store last opened the way a writer of the previous version does
   * (raising no horizon; chain fields are not checked here). Absent for memory.
   */
  appendUncounted?(row: { seq: number; time: number; exp: number }): Promise<void>
  /** Empties the horizon rows of the store last opened, behind its back (only to see what a reseed reads). */
  forgetHorizons?(): Promise<void>
  /**
   * Cuts the log of the store last opened back to `seq` by hand, as an operator undoing records does:
   * the records after it deleted and the head set back to it.
   */
  cutBack?(seq: number): Promise<void>
}

const T0 = 1_800_000_000
const HOUR = 3600
const DAY = 86_400

function token(time: number, lifetime: number, over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: 'token.issued', time, requestId: `req-${time}-${lifetime}`, caller: { sub: 'alice' }, role: 'schedd', tokenKind: 'idtoken',
    issuedSub: 'schedd@pool', jti: `jti-${time}-${lifetime}`, exp: time + lifetime, decision: 'allow', site: 'SITE_A', ...over,
  }
}

function revocation(kind: 'sub' | 'jti', value: string, revokedAt: number, until: number): { rev: Parameters<BrokerStore['revoke']>[0]; event: AuditEvent } {
  return {
    rev: { kind, value, revokedAt, until, revokedBy: 'admin' },
    event: { type: 'token.revoked', time: revokedAt, caller: { sub: 'admin' }, decision: 'allow', reason: 'test' },
  }
}

export function issuanceHorizonContract(name: string, h: HorizonHarness): void {
  describe(`issuance horizon: ${name}`, () => {
    const open: BrokerStore[] = []
    const keep = (s: BrokerStore) => { open.push(s); return s }
    afterEach(async () => { for (const s of open.splice(0)) await s.close().catch(() => {}) })

    it('is nothing before the first issuance, then the latest exp and the longest lifetime, never lowered', async () => {
      const store = keep(await h.open())
      expect(await store.issuanceHorizon()).toEqual({ token: { exp: 0, lifetime: 0 }, certificate: { exp: 0, lifetime: 0 } })
      await store.record(token(T0, 7 * DAY))
      await store.record({ type: 'certificate.issued', time: T0 + 10, caller: { sub: 'bob' }, exp: T0 + 10 + 30 * DAY, decision: 'allow', detail: { serial: '0a' } })
      const first = { token: { exp: T0 + 7 * DAY, lifetime: 7 * DAY }, certificate: { exp: T0 + 10 + 30 * DAY, lifetime: 30 * DAY } }
      expect(await store.issuanceHorizon()).toEqual(first)
      // Shorter and earlier issuances, a renewal, and records that hand nothing out leave it as it is.
      await store.record(token(T0 + 20, HOUR))
      await store.record(token(T0 + 30, 2 * HOUR, { type: 'token.renewed' }))
      await store.record({ type: 'token.denied', time: T0 + 40, caller: { sub: 'eve' }, exp: T0 + 365 * DAY, decision: 'deny', reason: 'no' })
      // An IAM access token fetched for a job lives as long as IAM says; no revocation of ours reaches it.
      await store.record(token(T0 + 45, 365 * DAY, { tokenKind: 'access_token' }))
      await store.record({ type: 'certificate.revoked', time: T0 + 50, caller: { sub: 'admin' }, exp: T0 + 400 * DAY, decision: 'allow', detail: { serial: '0a' } })
      expect(await store.issuanceHorizon()).toEqual(first)
      // A renewal reaching further raises the token horizon only.
      await store.record(token(T0 + 60, 8 * DAY, { type: 'token.renewed' }))
      expect(await store.issuanceHorizon()).toEqual({ ...first, token: { exp: T0 + 60 + 8 * DAY, lifetime: 8 * DAY } })
    })

    it('survives pruning the records it came from', async () => {
      const store = keep(await h.open())
      await store.record(token(T0, 7 * DAY))
      await store.record(token(T0 + 2 * DAY, HOUR))
      const pruned = await store.prune(T0 + DAY, T0 + 2 * DAY)
      expect(pruned.pruned).toBe(1)
      expect((await store.issuanceHorizon()).token).toEqual({ exp: T0 + 7 * DAY, lifetime: 7 * DAY })
    })

    it('keeps a revocation in force until the last token issued before it expires', async () => {
      const store = keep(await h.open())
      await store.record(token(T0, 7 * DAY))
      // The service asks for one hour (a maximum lifetime lowered to an hour); a 7-day token is out.
      const { rev, event } = revocation('sub', 'schedd@pool', T0 + DAY, T0 + DAY + HOUR)
      const stored = await store.revoke(rev, event)
      expect(stored.until).toBe(T0 + 7 * DAY)
      expect((await store.listRevocations()).map((r) => r.until)).toEqual([T0 + 7 * DAY])
      expect((await store.listRevocations({ activeAt: T0 + 6 * DAY })).map((r) => r.id)).toEqual([stored.id])
      const record = (await store.query({ type: 'token.revoked', limit: 10 })).records[0]!
      expect((record.event.detail as { revocation: { until: number } }).revocation.until).toBe(T0 + 7 * DAY)
      // The chain and the table still agree.
      expect((await store.verifyRevocations()).ok).toBe(true)
    })

    it('leaves a later until, and a jti entry, as asked; certificates do not lengthen it', async () => {
      const store = keep(await h.open())
      await store.record(token(T0, DAY))
      // The CRL holds certificates by their own horizon (certificate_service.ts): the token entry stays short.
      await store.record({ type: 'certificate.issued', time: T0, caller: { sub: 'bob' }, exp: T0 + 30 * DAY, decision: 'allow', detail: { serial: '0d' } })
      const short = revocation('sub', 'other@pool', T0 + HOUR, T0 + 2 * HOUR)
      expect((await store.revoke(short.rev, short.event)).until).toBe(T0 + DAY)
      const later = revocation('sub', 'schedd@pool', T0 + HOUR, T0 + HOUR + 7 * DAY)
      expect((await store.revoke(later.rev, later.event)).until).toBe(T0 + HOUR + 7 * DAY)
      const one = revocation('jti', 'jti-x', T0 + HOUR, T0 + 2 * HOUR)
      expect((await store.revoke(one.rev, one.event)).until).toBe(T0 + 2 * HOUR)
    })

    it('counts an issuance committed in the same batch ahead of the revocation', async () => {
      const store = keep(await h.open())
      const { rev, event } = revocation('sub', 'schedd@pool', T0 + HOUR, T0 + 2 * HOUR)
      // Both queued before either commits: one group commit, the issuance first.
      const [, stored] = await Promise.all([store.record(token(T0, 5 * DAY)), store.revoke(rev, event)])
      expect(stored.until).toBe(T0 + 5 * DAY)
    })

    it('sees what another process issued', async () => {
      if (!h.openPeer) return expect(h.openPeer).toBeUndefined()
      const first = keep(await h.open())
      await first.record(token(T0, HOUR))
      const peer = keep(await h.openPeer())
      await peer.record(token(T0 + 5, 9 * DAY))
      expect((await first.issuanceHorizon()).token).toEqual({ exp: T0 + 5 + 9 * DAY, lifetime: 9 * DAY })
      const { rev, event } = revocation('sub', 'schedd@pool', T0 + HOUR, T0 + 2 * HOUR)
      expect((await first.revoke(rev, event)).until).toBe(T0 + 5 + 9 * DAY)
    })

    it('takes in, when reseeded at start, what a writer of the previous version appended after the upgrade', async () => {
      if (!h.appendUncounted) return expect(h.rewind).toBeUndefined()
      const store = keep(await h.open())
      await store.record(token(T0, DAY))
      await h.appendUncounted({ seq: 2, time: T0 + 10, exp: T0 + 10 + 8 * DAY })
      expect((await store.issuanceHorizon()).token).toEqual({ exp: T0 + DAY, lifetime: DAY })
      await store.reseedHorizons()
      expect((await store.issuanceHorizon()).token).toEqual({ exp: T0 + 10 + 8 * DAY, lifetime: 8 * DAY })
      // A revocation recorded since holds that token too.
      const { rev, event } = revocation('sub', 'schedd@pool', T0 + HOUR, T0 + 2 * HOUR)
      expect((await store.revoke(rev, event)).until).toBe(T0 + 10 + 8 * DAY)
    })

    it('reads, when reseeded, only what was appended since the last reseed', async () => {
      if (!h.appendUncounted || !h.forgetHorizons) return expect(h.forgetHorizons).toBeUndefined()
      const store = keep(await h.open())
      await store.record(token(T0, DAY))
      await h.appendUncounted({ seq: 2, time: T0 + 10, exp: T0 + 10 + 8 * DAY })
      await store.reseedHorizons()
      // Rows the log says should be there but are not, below where the last reseed stopped: not read again.
      await h.forgetHorizons()
      await store.reseedHorizons()
      expect(await store.issuanceHorizon()).toEqual({ token: { exp: 0, lifetime: 0 }, certificate: { exp: 0, lifetime: 0 } })
      // What a previous version appended since is read.
      await h.appendUncounted({ seq: 3, time: T0 + 20, exp: T0 + 20 + 2 * DAY })
      await store.reseedHorizons()
      expect((await store.issuanceHorizon()).token).toEqual({ exp: T0 + 20 + 2 * DAY, lifetime: 2 * DAY })
    })

    it('reads the whole log again, when reseeded, once the log is cut back below where the last reseed stopped', async () => {
      if (!h.appendUncounted || !h.cutBack) return expect(h.cutBack).toBeUndefined()
      const store = keep(await h.open())
      for (const i of [0, 1, 2]) await store.record(token(T0 + i, DAY))
      await store.reseedHorizons()
      // Records 2 and 3 undone by hand: the seqs after 1 are handed out again.
      await h.cutBack(1)
      await store.reseedHorizons()
      // A writer of the previous version then appends 2, 3, 4: the head passes where the last reseed stopped.
      await h.appendUncounted({ seq: 2, time: T0 + 10, exp: T0 + 10 + 8 * DAY })
      await h.appendUncounted({ seq: 3, time: T0 + 20, exp: T0 + 20 + HOUR })
      await h.appendUncounted({ seq: 4, time: T0 + 30, exp: T0 + 30 + HOUR })
      await store.reseedHorizons()
      expect((await store.issuanceHorizon()).token).toEqual({ exp: T0 + 10 + 8 * DAY, lifetime: 8 * DAY })
      const { rev, event } = revocation('sub', 'schedd@pool', T0 + HOUR, T0 + 2 * HOUR)
      expect((await store.revoke(rev, event)).until).toBe(T0 + 10 + 8 * DAY)
    })

    it('is seeded from the log when a database of the previous schema is upgraded', async () => {
      if (!h.rewind || !h.reopen) return expect(h.rewind).toBeUndefined()
      const store = await h.open()
      await store.record(token(T0, 3 * DAY))
      await store.record({ type: 'certificate.issued', time: T0 + 1, caller: { sub: 'bob' }, exp: T0 + 1 + 20 * DAY, decision: 'allow', detail: { serial: '0b' } })
      await store.record(token(T0 + 2, 25 * DAY, { type: 'token.denied', decision: 'deny', reason: 'no' }))
      await store.record(token(T0 + 3, 90 * DAY, { tokenKind: 'access_token' }))
      await store.close()
      await h.rewind()
      const again = keep(await h.reopen())
      expect(await again.issuanceHorizon()).toEqual({ token: { exp: T0 + 3 * DAY, lifetime: 3 * DAY }, certificate: { exp: T0 + 1 + 20 * DAY, lifetime: 20 * DAY } })
      expect((await again.verify()).ok).toBe(true)
    })
  })
}
