import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { RevocationState } from '../../src/storage/chain_source.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import type { WriteOp } from '../../src/storage/write_ops.ts'

// Retention prunes in chunks, each its own commit, and a large prune commits one every few hundred
// milliseconds for minutes (docs/audit.md, "Retention"). The start-up and periodic checks run meanwhile (on
// PostgreSQL, another replica's prune; in this process, the timers that fire together), and a check takes
// longer than a chunk: each attempt sees the first seq move. Every state the check can read is a whole pruned
// chain, so none of this is tampering. Here a chunk is 3 records and the prune takes 5 chunks.
const T0 = 1_800_000_000
const issued = (i: number, time = T0 + i): AuditEvent => ({ type: 'token.issued', time, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow' })
const revokedBy: AuditEvent = { type: 'token.revoked', time: T0 + 2, caller: { sub: 'admin' } }

/** Each prune chunk waits for `release`; each check, once it has read the log's extent, lets one chunk commit. */
class ChunkDuringCheck extends MemoryStore {
  protected override readonly pruneChunk = 3
  #waiting: Array<() => void> = []
  #committed: Array<() => void> = []
  pruning = false
  #free = false
  /** Resolves once the prune has submitted its first chunk (bounded). */
  async chunkWaiting(): Promise<void> {
    for (let i = 0; i < 100 && this.#waiting.length === 0; i++) await new Promise((r) => setImmediate(r))
    expect(this.#waiting.length).toBe(1)
  }
  /** Lets every chunk still to come commit without waiting. */
  releaseAll(): void {
    this.#free = true
    for (const go of this.#waiting.splice(0)) go()
  }
  protected override async commitBatch(ops: WriteOp[]): Promise<void> {
    if (!ops.some((op) => op.kind === 'prune')) return super.commitBatch(ops)
    if (!this.#free) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    await super.commitBatch(ops)
    this.#committed.shift()?.()
  }
  /** Which read of the log's extent lets a chunk through: the revocation check's state, or verify()'s head. */
  during: 'state' | 'head' = 'state'
  async #oneChunk(): Promise<void> {
    if (!this.pruning) return
    // Bounded: the prune has 5 chunks; once it ended nothing waits.
    for (let i = 0; i < 100 && this.#waiting.length === 0; i++) await new Promise((r) => setImmediate(r))
    const go = this.#waiting.shift()
    if (go) await new Promise<void>((resolve) => { this.#committed.push(resolve); go() })
  }
  protected override async readRevocationState(): Promise<RevocationState> {
    const state = await super.readRevocationState()
    if (this.during === 'state') await this.#oneChunk()
    return state
  }
  protected override async readHead(): Promise<{ seq: number; hash: string }> {
    const head = await super.readHead()
    if (this.during === 'head') await this.#oneChunk()
    return head
  }
}

async function logWithRevocation(): Promise<ChunkDuringCheck> {
  const s = new ChunkDuringCheck()
  await s.record(issued(1))
  await s.revoke({ kind: 'site', value: 'SITE_A', revokedAt: T0 + 2, until: T0 + 10 * 86400 }, revokedBy)
  for (let i = 3; i <= 15; i++) await s.record(issued(i))
  for (let i = 16; i <= 18; i++) await s.record(issued(i, T0 + 200 + i))
  return s
}

for (const anchored of [true, false]) {
  it(`a chunked prune committing chunk after chunk during the ${anchored ? 'anchored' : 'full'} check is not reported as tampering`, async () => {
    const s = await logWithRevocation()
    const anchorKey = Buffer.alloc(32, 7)
    if (anchored) expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 1 })
    s.pruning = true
    const prune = s.prune(T0 + 100, T0 + 500)
    const check = await s.verifyRevocations({ anchorKey })
    s.pruning = false
    // The chunks the check did not let through commit now.
    s.releaseAll()
    expect(check).toEqual({ ok: true, revocations: 1 })
    expect(await prune).toMatchObject({ pruned: 15, chunks: 5 })
    expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 1 })
  })
}

// The console's chain status runs verify(), a full scan from the head it read first. A chunk committing after
// that read removes the records the scan starts with, and the checkpoint vouching for the new first record
// lies past the head read, so the scan sees a prefix deleted with no checkpoint.
it('verify() during a chunked prune does not report the prefix as deleted by hand', async () => {
  const s = await logWithRevocation()
  s.during = 'head'
  const prune = s.prune(T0 + 100, T0 + 500)
  await s.chunkWaiting()
  s.pruning = true
  const verified = await s.verify()
  s.pruning = false
  s.releaseAll()
  expect(verified).toMatchObject({ ok: true })
  expect(await prune).toMatchObject({ pruned: 15, chunks: 5 })
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 16 })
})
