import { afterEach, describe, expect, it } from 'vitest'
import type { StoredSession } from '../../src/console/session_store.ts'
import type { BrokerStore } from '../../src/storage/chained_store.ts'

/**
 * The console_sessions table's semantics, run against every backend: rows read back as written, sign-out
 * deletes, each sign-in sweeps a bounded number of expired rows and keeps the table within its cap (the
 * new session always stays), and none of it touches the audit chain.
 */
export function consoleSessionStoreContract(name: string, open: () => Promise<BrokerStore>): void {
  describe(`console session store contract: ${name}`, () => {
    let store: BrokerStore | undefined
    afterEach(async () => { await store?.close(); store = undefined })

    const row = (n: number, over: Partial<StoredSession> = {}): StoredSession => ({
      idSha256: `digest-${String(n).padStart(4, '0')}`, principal: `https://iam.example.org/,user-${n}`, createdAt: 1000 + n, lastSeenAt: 1000 + n, expiresAt: 5000 + n, sealed: `v1.sealed-${n}`, ...over,
    })
    const create = (s: BrokerStore, session: StoredSession, now = 1000, max = 1000, sweep = 100) =>
      s.writeConsoleSession({ action: 'create', session, now, max, sweep })
    const present = async (s: BrokerStore, ns: number[]) => (await Promise.all(ns.map(async (n) => (await s.readConsoleSession(row(n).idSha256)) ? n : undefined))).filter((n) => n !== undefined)

    it('reads a session back as written, and deletes it on sign-out; none of it is an audit record', async () => {
      const s = store = await open()
      await create(s, row(1))
      // On the store's one write path (for SQLite, the writer thread), not a connection of its own.
      const committed = s.commitStats().items
      await create(s, row(2))
      expect(s.commitStats().items).toBe(committed + 1)
      expect(await s.readConsoleSession(row(1).idSha256)).toEqual(row(1))
      expect(await s.readConsoleSession('digest-none')).toBeUndefined()
      await s.writeConsoleSession({ action: 'delete', idSha256: row(1).idSha256 })
      expect(await s.readConsoleSession(row(1).idSha256)).toBeUndefined()
      expect(await s.readConsoleSession(row(2).idSha256)).toEqual(row(2))
      await s.writeConsoleSession({ action: 'delete', idSha256: 'digest-none' })
      expect((await s.query({ limit: 10 })).records).toEqual([])
      expect(await s.verify()).toMatchObject({ ok: true, records: 0 })
    })

    it('records activity on a session (touch) without changing anything else, and never brings a deleted one back', async () => {
      const s = store = await open()
      await create(s, row(1))
      await create(s, row(2))
      await s.writeConsoleSession({ action: 'touch', idSha256: row(1).idSha256, at: 1500 })
      expect(await s.readConsoleSession(row(1).idSha256)).toEqual({ ...row(1), lastSeenAt: 1500 })
      expect(await s.readConsoleSession(row(2).idSha256)).toEqual(row(2))
      // A touch racing a sign-out on another replica: the row stays gone.
      await s.writeConsoleSession({ action: 'delete', idSha256: row(2).idSha256 })
      await s.writeConsoleSession({ action: 'touch', idSha256: row(2).idSha256, at: 1600 })
      expect(await s.readConsoleSession(row(2).idSha256)).toBeUndefined()
      expect((await s.query({ limit: 10 })).records).toEqual([])
    })

    it('sweeps at most `sweep` expired rows per sign-in, never a live one', async () => {
      const s = store = await open()
      for (let n = 1; n <= 5; n++) await create(s, row(n, { expiresAt: 2000 }))
      await create(s, row(6, { expiresAt: 9000 }))
      await create(s, row(7, { expiresAt: 9000 }), 2000, 1000, 3)
      expect((await present(s, [1, 2, 3, 4, 5])).length).toBe(2)
      expect(await present(s, [6, 7])).toEqual([6, 7])
      await create(s, row(8, { expiresAt: 9000 }), 2000, 1000, 3)
      expect(await present(s, [1, 2, 3, 4, 5, 6, 7, 8])).toEqual([6, 7, 8])
    })

    it('keeps at most `max` rows: the oldest sign-ins go, the new one stays even if its clock is behind', async () => {
      const s = store = await open()
      for (let n = 1; n <= 4; n++) await create(s, row(n), 1000, 3)
      expect(await present(s, [1, 2, 3, 4])).toEqual([2, 3, 4])
      await create(s, row(5, { createdAt: 1 }), 1000, 3)
      expect(await present(s, [1, 2, 3, 4, 5])).toEqual([3, 4, 5])
    })
  })
}
