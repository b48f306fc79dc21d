// The SQLite writer thread's own contract beyond the store suite (audit_log.contract.ts runs that suite on
// it): bounded waiting, refusal after close, and order of settlement across transactions.
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { StoreOverloaded } from '../../src/storage/group_commit.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'

const event = (i: number): AuditEvent => ({
  type: 'token.issued', time: 1_800_000_000 + i, requestId: `r-${i}`, caller: { sub: 'caller' }, role: 'startd',
  tokenKind: 'idtoken', issuedSub: `startd-${i}@pool.example.org`, jti: `jti-${i}`, decision: 'allow',
})

describe('SQLite writer thread', () => {
  it('refuses writes beyond max_pending at once, and commits the ones it accepted', async () => {
    const store = new SqliteStore({ file: join(tempDir(), 'a.db'), groupCommit: { maxPending: 5 } })
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => store.record(event(i + 1))))
    const refused = outcomes.filter((o) => o.status === 'rejected')
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(5)
    expect(refused).toHaveLength(7)
    for (const o of refused) expect((o as PromiseRejectedResult).reason).toBeInstanceOf(StoreOverloaded)
    expect(await store.verify()).toMatchObject({ ok: true, records: 5 })
    // Room again once those committed.
    await store.record(event(99))
    expect(await store.verify()).toMatchObject({ ok: true, records: 6 })
    await store.close()
  })

  it('settles each record only when its own transaction commits, in order, across many transactions', async () => {
    const store = new SqliteStore({ file: join(tempDir(), 'a.db'), groupCommit: { maxBatch: 7 } })
    const settled: number[] = []
    const all = Array.from({ length: 100 }, (_, i) => store.record(event(i + 1)).then(() => { settled.push(i + 1) }))
    await Promise.all(all)
    expect(settled).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    const stats = store.commitStats()
    expect(stats.items).toBe(100)
    expect(stats.batches).toBeGreaterThanOrEqual(Math.ceil(100 / 7))
    const seqs: number[] = []
    for await (const r of store.scan()) seqs.push(r.seq)
    expect(seqs).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    await store.close()
  })

  it('hands the thread what waits as soon as its commit ends, without waiting for the event-loop turn to end', async () => {
    const store = new SqliteStore({ file: join(tempDir(), 'a.db') })
    await store.record(event(1))
    const before = store.commitStats().batches
    // One long turn of the event loop (as when it reads many requests at once): records are produced
    // from microtasks, with CPU work between them, and the loop never reaches its next phase. The thread
    // commits the first record alone; the event loop learns that only from shared memory, since its
    // reply waits for the turn's end. Waiting for the turn would put records 3-41 in a single second
    // transaction.
    const pending: Array<Promise<void>> = []
    await (async () => {
      for (let i = 2; i <= 41; i++) {
        pending.push(store.record(event(i)))
        await Promise.resolve()
        const until = performance.now() + 25
        while (performance.now() < until) { /* the rest of a request's work */ }
      }
    })()
    await Promise.all(pending)
    expect(store.commitStats().items).toBe(41)
    expect(store.commitStats().batches - before).toBeGreaterThanOrEqual(3)
    expect(await store.verify()).toMatchObject({ ok: true, records: 41 })
    await store.close()
  })

  it('waits for queued records on close, then refuses new ones', async () => {
    const file = join(tempDir(), 'a.db')
    const store = new SqliteStore({ file })
    const queued = Array.from({ length: 50 }, (_, i) => store.record(event(i + 1)))
    await store.close()
    await expect(Promise.all(queued)).resolves.toBeDefined()
    await expect(store.record(event(51))).rejects.toThrow(/closed/)
    const reopened = new SqliteStore({ file, writer: 'inline' })
    expect(await reopened.verify()).toMatchObject({ ok: true, records: 50 })
    await reopened.close()
  })

  it('tells its store once that the write path stopped for good when the thread dies, and never at an orderly close', async () => {
    const dead = new SqliteStore({ file: join(tempDir(), 'a.db') })
    const heard: string[] = []
    dead.onWritePathStopped((reason) => heard.push(reason))
    await dead.record(event(1))
    await dead.writerThread!.terminate()
    for (let i = 0; i < 100 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    expect(heard).toEqual(['audit writer thread has stopped'])
    // A listener added later hears it too, at once: serve subscribes only once it serves.
    const late: string[] = []
    dead.onWritePathStopped((reason) => late.push(reason))
    await new Promise((r) => setTimeout(r, 10))
    expect(late).toEqual(['audit writer thread has stopped'])
    expect(heard).toHaveLength(1)
    await dead.close()

    const closed = new SqliteStore({ file: join(tempDir(), 'b.db') })
    const none: string[] = []
    closed.onWritePathStopped((reason) => none.push(reason))
    await closed.record(event(1))
    await closed.close()
    await new Promise((r) => setTimeout(r, 50))
    expect(none).toEqual([])
  })
})
