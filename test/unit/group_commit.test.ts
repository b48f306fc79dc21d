import { afterEach, describe, expect, it, vi } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { GroupCommitter } from '../../src/storage/group_commit.ts'

/** A backend whose commits finish only when the test says so, logging what happened in which order. */
function manualBackend() {
  const log: string[] = []
  const open: Array<{ items: number[]; done: (err?: Error) => void }> = []
  const commit = (items: number[]) => new Promise<void>((resolve, reject) => {
    log.push(`start ${items.join(',')}`)
    open.push({ items, done: (err) => (err ? reject(err) : resolve()) })
  })
  return { log, open, commit }
}
const turn = () => new Promise<void>((r) => setImmediate(r))

describe('GroupCommitter', () => {
  it('hands the next batch to the backend before settling the one that just committed', async () => {
    const b = manualBackend()
    const gc = new GroupCommitter<number>(b.commit)
    const first = gc.submit(1).then(() => b.log.push('settled 1'))
    await turn()
    expect(b.log).toEqual(['start 1'])
    const second = [gc.submit(2).then(() => b.log.push('settled 2')), gc.submit(3).then(() => b.log.push('settled 3'))]
    b.open.shift()!.done()
    await first
    // Records queued during commit 1 went to the backend before commit 1's caller heard back.
    expect(b.log).toEqual(['start 1', 'start 2,3', 'settled 1'])
    b.open.shift()!.done()
    await Promise.all(second)
    expect(b.log).toEqual(['start 1', 'start 2,3', 'settled 1', 'settled 2', 'settled 3'])
    expect(gc.stats()).toEqual({ batches: 2, items: 3, pending: 0 })
    await gc.close()
  })

  it('fails only the batch that failed; one batch in flight at a time', async () => {
    const b = manualBackend()
    const gc = new GroupCommitter<number>(b.commit)
    const r1 = gc.submit(1)
    await turn()
    const r2 = gc.submit(2)
    await turn()
    expect(b.open).toHaveLength(1)
    b.open.shift()!.done(new Error('disk full'))
    await expect(r1).rejects.toThrow('disk full')
    expect(b.open.map((o) => o.items)).toEqual([[2]])
    b.open.shift()!.done()
    await expect(r2).resolves.toBeUndefined()
    expect(gc.stats()).toEqual({ batches: 1, items: 1, pending: 0 })
    await gc.close()
  })

  it('a batch that failed in a way the backend says strands the queue fails what queued behind it too, unsent', async () => {
    const b = manualBackend()
    const gc = new GroupCommitter<number>(b.commit, { strandsQueue: (err) => (err as Error).message === 'no answer' })
    const r1 = gc.submit(1)
    await turn()
    const behind = [gc.submit(2), gc.submit(3)]
    await turn()
    b.open.shift()!.done(new Error('no answer'))
    await expect(r1).rejects.toThrow('no answer')
    // Sent nowhere: the records queued behind the stranded batch fail at once with it, not a bound later.
    for (const r of behind) await expect(r).rejects.toThrow('no answer')
    expect(b.log).toEqual(['start 1'])
    // What comes after starts a batch of its own.
    const r4 = gc.submit(4)
    await turn()
    expect(b.log).toEqual(['start 1', 'start 4'])
    b.open.shift()!.done()
    await expect(r4).resolves.toBeUndefined()
    // Any other failure still fails its own batch only.
    const r5 = gc.submit(5)
    await turn()
    const r6 = gc.submit(6)
    b.open.shift()!.done(new Error('disk full'))
    await expect(r5).rejects.toThrow('disk full')
    await turn()
    b.open.shift()!.done()
    await expect(r6).resolves.toBeUndefined()
    await gc.close()
  })

  it('a commit that throws synchronously rejects its batch and the committer keeps going', async () => {
    let calls = 0
    const gc = new GroupCommitter<number>(() => { if (calls++ === 0) throw new Error('boom') })
    await expect(gc.submit(1)).rejects.toThrow('boom')
    await expect(gc.submit(2)).resolves.toBeUndefined()
    await gc.close()
  })

  it('tells onBatch the size of each committed batch, and nothing of a failed one', async () => {
    const b = manualBackend()
    const gc = new GroupCommitter<number>(b.commit)
    const sizes: number[] = []
    gc.onBatch = (n) => sizes.push(n)
    const first = gc.submit(1)
    await turn()
    const rest = [gc.submit(2), gc.submit(3), gc.submit(4)]
    b.open.shift()!.done()
    await first
    b.open.shift()!.done(new Error('disk full'))
    await Promise.allSettled(rest)
    const last = gc.submit(5)
    await turn()
    b.open.shift()!.done()
    await last
    expect(sizes).toEqual([1, 1])
    await gc.close()
  })

  // A write whose batch has not started has reached no server: failing it keeps fail closed, and answers its
  // caller (503, retried) instead of leaving it behind a batch that may take the long bound (a prune).
  describe('queueDeadlineMs', () => {
    afterEach(() => { vi.useRealTimers() })

    it('fails, unsent, each write that waited in the queue past the deadline; the batch in flight and younger writes are untouched', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
      const b = manualBackend()
      const gc = new GroupCommitter<number>(b.commit, { queueDeadlineMs: 1000 })
      const inFlight = gc.submit(1)
      await turn()
      const settled: string[] = []
      const note = (n: number, p: Promise<void>) => p.then(() => settled.push(`${n} ok`), (e: unknown) => settled.push(`${n} ${e instanceof AuditStoreUnavailable ? e.status : String(e)}`))
      void note(1, inFlight)
      const old = gc.submit(2)
      void note(2, old)
      vi.advanceTimersByTime(600)
      void note(3, gc.submit(3))
      vi.advanceTimersByTime(500)
      await turn()
      // 2 waited 1100 ms, past the deadline; 3 only 500 ms; 1 is the server's and waits on its own bound.
      expect(settled).toEqual(['2 503'])
      expect(gc.stats().pending).toBe(1)
      vi.advanceTimersByTime(600)
      await turn()
      expect(settled).toEqual(['2 503', '3 503'])
      expect(b.log).toEqual(['start 1'])
      b.open.shift()!.done()
      await turn()
      expect(settled).toEqual(['2 503', '3 503', '1 ok'])
      // The queue is empty and the committer carries on.
      const later = gc.submit(4)
      await turn()
      expect(b.log).toEqual(['start 1', 'start 4'])
      b.open.shift()!.done()
      await expect(later).resolves.toBeUndefined()
      await gc.close()
    })
  })

  // A prune's transaction may run for the long bound: a write batched with it would wait as long.
  it('an item the backend calls solo commits in a batch of its own, never with others', async () => {
    const b = manualBackend()
    const gc = new GroupCommitter<number>(b.commit, { solo: (n) => n >= 100 })
    const all = [gc.submit(1)]
    await turn()
    all.push(gc.submit(2), gc.submit(3), gc.submit(100), gc.submit(101), gc.submit(4), gc.submit(5))
    for (let i = 0; i < 5; i++) { b.open.shift()!.done(); await turn() }
    await Promise.all(all)
    expect(b.log).toEqual(['start 1', 'start 2,3', 'start 100', 'start 101', 'start 4,5'])
    await gc.close()
  })
})
