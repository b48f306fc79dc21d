import { join } from 'node:path'
import { expect, it } from 'vitest'
import type { AuditEvent, AuditRecord } from '../../src/audit/audit_log.ts'
import type { StoredRow } from '../../src/audit/chain.ts'
import { exportChain } from '../../src/audit/chain_export.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import type { WriteOp } from '../../src/storage/write_ops.ts'
import { tempDir } from '../support/tmp.ts'

// `audit export` reads the log in pages (500 rows on SQLite) while retention may prune it in chunks (5,000
// records, one commit every few hundred milliseconds for minutes). A chunk that commits after the export read
// its first page deletes the rows of its next pages: the file skips from one seq to a later one, and the
// offline verifier (scripts/verify_audit_export.ts) calls it broken, as if records had been deleted by hand.
// Here a chunk is 1,000 records, and one commits right after the export has read its first record.
const T0 = 1_800_000_000
const issued = (i: number, time = T0 + i): AuditEvent => ({ type: 'token.issued', time, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow' })

class ChunkDuringExport extends SqliteStore {
  protected override readonly pruneChunk = 1000
  #waiting: Array<() => void> = []
  #free = false
  exporting = false
  protected override async commitBatch(ops: WriteOp[]): Promise<void> {
    if (ops.some((op) => op.kind === 'prune') && !this.#free) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    super.commitBatch(ops)
  }
  async chunkWaiting(): Promise<void> {
    for (let i = 0; i < 1000 && this.#waiting.length === 0; i++) await new Promise((r) => setImmediate(r))
    expect(this.#waiting.length).toBe(1)
  }
  releaseAll(): void {
    this.#free = true
    for (const go of this.#waiting.splice(0)) go()
  }
  protected override async *scanRows(fromSeq: number): AsyncIterable<StoredRow> {
    let first = true
    for await (const row of super.scanRows(fromSeq)) {
      yield row
      if (first && this.exporting) {
        first = false
        // One chunk commits (its writer runs inline, on this turn) before the next row is asked for.
        this.#waiting.shift()?.()
        await new Promise((r) => setImmediate(r))
      }
    }
  }
}

it('an export that a chunked prune overtakes says so instead of writing a chain with a gap', async () => {
  const s = new ChunkDuringExport({ file: join(tempDir(), 'audit.db'), writer: 'inline' })
  try {
    for (let i = 1; i <= 2500; i += 500) await Promise.all(Array.from({ length: 500 }, (_, k) => s.record(issued(i + k))))
    await s.record(issued(2501, T0 + 5000))
    const prune = s.prune(T0 + 3000, T0 + 6000)
    await s.chunkWaiting()
    s.exporting = true
    const written: AuditRecord[] = []
    const outcome = await exportChain((from) => s.scan(from), undefined, (r) => { written.push(r) })
    s.exporting = false
    s.releaseAll()
    expect(await prune).toMatchObject({ pruned: 2500 })
    // Pages of 500: seq 1-500 read before the chunk deleted 1-1000; the next page starts at 1001.
    expect(outcome).toEqual({ records: 500, prunedMeanwhile: { after: 500, next: 1001 } })
    expect(written.map((r) => r.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1))
  } finally { await s.close() }
})

it('an export of a log with records deleted by hand in the middle writes the gap, for the verifier to name', async () => {
  const s = new ChunkDuringExport({ file: join(tempDir(), 'audit.db'), writer: 'inline' })
  try {
    for (let i = 1; i <= 20; i++) await s.record(issued(i))
    const all: AuditRecord[] = []
    for await (const r of s.scan()) all.push(r)
    const scan = async function* (): AsyncIterable<AuditRecord> { for (const r of all) if (r.seq !== 7) yield r }
    const written: number[] = []
    expect(await exportChain(scan, undefined, (r) => { written.push(r.seq) })).toEqual({ records: 19 })
    expect(written).not.toContain(7)
  } finally { await s.close() }
})
