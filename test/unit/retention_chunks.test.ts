import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { StoredRow } from '../../src/audit/chain.ts'
import { auditMacKey } from '../../src/audit/record_mac.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import type { WriteOp } from '../../src/storage/write_ops.ts'

// Retention deletes the prunable prefix a chunk at a time, each chunk a transaction of its own with its own
// checkpoint, so that requests' records commit between chunks (docs/audit.md, "Retention"). Here a chunk is
// 3 records; everything before T0 + 100 is prunable.
const T0 = 1_800_000_000
const issued = (i: number, time = T0 + i): AuditEvent => ({ type: 'token.issued', time, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow' })
const revoked: AuditEvent = { type: 'token.revoked', time: T0 + 2, caller: { sub: 'admin' } }

class SmallChunks extends MemoryStore {
  protected override readonly pruneChunk = 3
  /** The prune ops committed, in order: one per chunk. */
  readonly chunks: Array<{ first: number; through: number }> = []
  /** Called before the prune op with this index commits. */
  beforeChunk: ((index: number, op: Extract<WriteOp, { kind: 'prune' }>) => Promise<void>) | undefined
  protected override async commitBatch(ops: WriteOp[]): Promise<void> {
    for (const op of ops) {
      if (op.kind !== 'prune') continue
      await this.beforeChunk?.(this.chunks.length, op)
      this.chunks.push({ first: op.range.first, through: op.range.through })
    }
    return super.commitBatch(ops)
  }
}

it('prunes 7 records in chunks of 3: three transactions, each with its checkpoint; the chain and the revocations verify', async () => {
  const s = new SmallChunks()
  await s.record(issued(1))
  const rev = await s.revoke({ kind: 'jti', value: 'j-1', revokedAt: T0 + 2, until: T0 + 10_000 }, revoked)
  for (let i = 3; i <= 4; i++) await s.record(issued(i))
  // A lift in the second chunk of a revocation pruned with the first: the first checkpoint carries the
  // revocation, the second the lift.
  await s.lift({ id: rev.id, liftedAt: T0 + 5 }, { type: 'token.unrevoked', time: T0 + 5, caller: { sub: 'admin' }, detail: { lift: { id: rev.id, liftedAt: T0 + 5 } } })
  for (let i = 6; i <= 7; i++) await s.record(issued(i))
  await s.record(issued(8, T0 + 200))
  // 7 prunable records (seq 1-7): chunks 1-3, 4-6, 7; checkpoints appended at seq 9, 10, 11.
  expect(await s.prune(T0 + 100, T0 + 300)).toEqual({ pruned: 7, checkpointSeq: 11, chunks: 3 })
  expect(s.chunks).toEqual([{ first: 1, through: 3 }, { first: 4, through: 6 }, { first: 7, through: 7 }])
  const checkpoints = (await s.query({ type: 'audit.checkpoint', limit: 10 })).records.reverse()
  expect(checkpoints.map((r) => [r.seq, (r.event.detail as { prunedThroughSeq: number }).prunedThroughSeq, (r.event.detail as { prunedCount: number }).prunedCount]))
    .toEqual([[9, 3, 3], [10, 6, 3], [11, 7, 1]])
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 8 })
  expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 1 })
})

it('a record submitted between chunks commits between them, and the next chunk still deletes only its own range', async () => {
  const s = new SmallChunks()
  for (let i = 1; i <= 6; i++) await s.record(issued(i))
  await s.record(issued(7, T0 + 200))
  let between: Promise<void> | undefined
  // Submitted while chunk 1 commits: queued before chunk 2, which is submitted only once chunk 1 has committed.
  s.beforeChunk = async (index) => { if (index === 0) between = s.record(issued(99, T0 + 250)) }
  expect(await s.prune(T0 + 100, T0 + 300)).toEqual({ pruned: 6, checkpointSeq: 10, chunks: 2 })
  await between
  // seq 8: chunk 1's checkpoint; seq 9: the record that arrived meanwhile; seq 10: chunk 2's checkpoint.
  const left = (await s.query({ limit: 10 })).records.sort((a, b) => a.seq - b.seq)
  expect(left.map((r) => [r.seq, r.event.type])).toEqual([[7, 'token.issued'], [8, 'audit.checkpoint'], [9, 'token.issued'], [10, 'audit.checkpoint']])
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 7 })
})

it('stopping between chunks keeps the chunks committed and leaves the rest for the next run', async () => {
  const s = new SmallChunks()
  for (let i = 1; i <= 7; i++) await s.record(issued(i))
  await s.record(issued(8, T0 + 200))
  const stopping = new AbortController()
  s.beforeChunk = async (index) => { if (index === 0) stopping.abort(new Error('the broker is stopping')) }
  // Chunk 1 was already submitted when the stop came: it commits, and no further chunk starts.
  expect(await s.prune(T0 + 100, T0 + 300, { signal: stopping.signal })).toEqual({ pruned: 3, checkpointSeq: 9 })
  expect(s.chunks).toEqual([{ first: 1, through: 3 }])
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 4 })
  s.beforeChunk = undefined
  expect(await s.prune(T0 + 100, T0 + 300)).toEqual({ pruned: 4, checkpointSeq: 11, chunks: 2 })
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 8 })
})

it('a stop before the first chunk abandons the prune as before, deleting nothing', async () => {
  const s = new SmallChunks()
  for (let i = 1; i <= 4; i++) await s.record(issued(i))
  const stopping = new AbortController()
  stopping.abort(new Error('the broker is stopping'))
  await expect(s.prune(T0 + 100, T0 + 300, { signal: stopping.signal })).rejects.toThrow('the broker is stopping')
  expect(s.chunks).toEqual([])
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 1 })
})

it('a chunk another replica pruned meanwhile ends the run: nothing deleted twice, the chain verifies', async () => {
  const s = new SmallChunks()
  for (let i = 1; i <= 7; i++) await s.record(issued(i))
  await s.record(issued(8, T0 + 200))
  // Before this store's second chunk, the other replica's prune of the same range commits (same log).
  s.beforeChunk = async (index, op) => {
    if (index === 1) await MemoryStore.prototype['commitBatch'].call(s, [{ ...op, result: undefined }])
  }
  expect(await s.prune(T0 + 100, T0 + 300)).toEqual({ pruned: 3, checkpointSeq: 9 })
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 7 })
  // The rest is for the next run.
  s.beforeChunk = undefined
  expect(await s.prune(T0 + 100, T0 + 300)).toMatchObject({ pruned: 1 })
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 8 })
})

it('with the audit MAC key each chunk\'s checkpoint carries the MAC era and its MAC, and a later prune trusts them', async () => {
  class KeyedSmallChunks extends MemoryStore { protected override readonly pruneChunk = 3 }
  const s = new KeyedSmallChunks({ auditMac: auditMacKey(Buffer.alloc(32, 7)) })
  // seq 1 is the record that opens the MAC era (audit.macs_started), then the records 2-9; 1-8 are prunable,
  // in chunks 1-3, 4-6, 7-8, whose checkpoints are seq 10-12 (time T0 + 300).
  for (let i = 1; i <= 7; i++) await s.record(issued(i))
  await s.record(issued(8, T0 + 200))
  const first = await s.prune(T0 + 100, T0 + 300)
  expect(first.pruned).toBe(8)
  const checkpoints = (await s.query({ type: 'audit.checkpoint', limit: 10 })).records
  expect(checkpoints.map((r) => (r.event.detail as { macFrom?: number }).macFrom)).toEqual([1, 1, 1])
  const rows: StoredRow[] = []
  for await (const row of s.scanStored()) rows.push(row)
  expect(rows.every((r) => typeof r.mac === 'string')).toBe(true)
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 9, macFrom: 1 })
  // The next prune starts behind the last chunk's checkpoint, which it must find vouching (with its MAC),
  // and prunes seq 9-12, the checkpoints among them, in chunks 9-11 and 12.
  for (let i = 20; i <= 21; i++) await s.record(issued(i, T0 + 400))
  expect(await s.prune(T0 + 350, T0 + 500)).toMatchObject({ pruned: 4 })
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 13, macFrom: 1 })
})

it('a chunk finding the log changed after earlier chunks committed says what was pruned, not "not pruning"', async () => {
  const s = new SmallChunks()
  for (let i = 1; i <= 7; i++) await s.record(issued(i))
  await s.record(issued(8, T0 + 200))
  // Before the second chunk, a record of its range is edited by hand: that chunk refuses, the first stays pruned.
  s.beforeChunk = async (index) => { if (index === 1) s.rawRows().find((r) => r.seq === 6)!.hash = 'f'.repeat(64) }
  await expect(s.prune(T0 + 100, T0 + 300)).rejects.toThrow('the audit log changed while retention checked it; pruned 3 records (1 chunk, the last checkpoint is record 9) before that and no further (run "audit verify")')
  expect((await s.query({ type: 'audit.checkpoint', limit: 10 })).records.map((r) => r.seq)).toEqual([9])
})

// The check reads the whole range before the first chunk, and the last chunk deletes seconds to minutes later.
// An insider who edits a record of a later chunk meanwhile (its body or its type column, leaving `through`
// alone) must not have the edit deleted and its revocation carried, altered or dropped, by a checkpoint the
// broker MACs: the chunk refuses, and the edited record stays for "audit verify" to name.
async function revocationInSecondChunk(): Promise<SmallChunks> {
  const s = new SmallChunks()
  for (let i = 1; i <= 4; i++) await s.record(issued(i))
  // seq 5: a revocation, in the second chunk (4-6).
  await s.revoke({ kind: 'site', value: 'SITE_A', revokedAt: T0 + 5, until: T0 + 10_000 }, { ...revoked, time: T0 + 5 })
  for (let i = 6; i <= 7; i++) await s.record(issued(i))
  await s.record(issued(8, T0 + 200))
  return s
}

it('a revocation record edited in its body after the check is not pruned by its chunk', async () => {
  const s = await revocationInSecondChunk()
  s.beforeChunk = async (index) => {
    if (index === 1) { const row = s.rawRows().find((r) => r.seq === 5)!; row.body = row.body.replace('SITE_A', 'SITE_B') }
  }
  await expect(s.prune(T0 + 100, T0 + 300)).rejects.toThrow('the audit log changed while retention checked it; pruned 3 records (1 chunk')
  expect(s.rawRows().some((r) => r.seq === 5)).toBe(true)
  expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 5 } })
})

it('a revocation record retyped in its type column after the check is not pruned by its chunk', async () => {
  const s = await revocationInSecondChunk()
  s.beforeChunk = async (index) => { if (index === 1) s.rawRows().find((r) => r.seq === 5)!.type = 'token.issued' }
  await expect(s.prune(T0 + 100, T0 + 300)).rejects.toThrow('the audit log changed while retention checked it; pruned 3 records (1 chunk')
  expect(s.rawRows().some((r) => r.seq === 5)).toBe(true)
  expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 5 } })
})
