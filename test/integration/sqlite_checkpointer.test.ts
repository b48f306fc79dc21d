// The writer thread's WAL checkpointing (sqlite_checkpointer.ts): the writer never checkpoints inside a
// commit, yet the WAL file stays bounded under sustained writes, and a reader that pins the WAL neither
// stalls commits nor keeps the WAL from resetting once it lets go.
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { DEFAULT_GROUP_COMMIT } from '../../src/storage/group_commit.ts'
import { WalCheckpointer, type CheckpointTuning } from '../../src/storage/sqlite_checkpointer.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { SqliteWriterClient } from '../../src/storage/sqlite_writer_client.ts'
import { tempDir } from '../support/tmp.ts'

const PAGE = 4096
const TUNING: CheckpointTuning = { passIntervalMs: 2, restartFrames: 100, finishAfterPassMs: 1000 }

const event = (i: number): AuditEvent => ({
  type: 'token.issued', time: 1_800_000_000 + i, requestId: `r-${i}`, caller: { sub: 'caller' }, role: 'startd',
  tokenKind: 'idtoken', issuedSub: `startd-${i}@pool.example.org`, jti: crypto.randomUUID().replaceAll('-', ''), decision: 'allow',
})

function client(file: string): SqliteWriterClient {
  return new SqliteWriterClient({ file, groupCommit: DEFAULT_GROUP_COMMIT, checkpoint: TUNING })
}

/** Commits `waves` transactions of 20 records each, one after the other; returns the WAL file's growth. */
async function write(c: SqliteWriterClient, file: string, from: number, waves: number): Promise<number> {
  const before = statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0
  let maxWal = before
  for (let w = 0; w < waves; w++) {
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.submit({ kind: 'event', json: JSON.stringify(event(from + w * 20 + i)) })))
    maxWal = Math.max(maxWal, statSync(`${file}-wal`).size)
  }
  return maxWal - before
}

/**
 * Writes until the WAL file has stopped growing for 10 transactions in a row, i.e. the WAL has been
 * reset (the checkpointer thread takes a moment to start); returns the records written.
 */
async function writeUntilReset(c: SqliteWriterClient, file: string): Promise<number> {
  let still = 0
  for (let w = 0; w < 500; w++) {
    still = (await write(c, file, 1 + w * 20, 1)) === 0 ? still + 1 : 0
    if (still === 10) return (w + 1) * 20
  }
  throw new Error('the WAL never reset')
}

/** Frames in the WAL now (a PASSIVE checkpoint reports them; it never resets the WAL by itself). */
function walFrames(file: string): number {
  const db = new DatabaseSync(file)
  try { return (db.prepare('PRAGMA wal_checkpoint(PASSIVE)').get() as { log: number }).log } finally { db.close() }
}

async function verify(file: string, records: number): Promise<void> {
  const store = new SqliteStore({ file, writer: 'inline' })
  expect(await store.verify()).toMatchObject({ ok: true, records })
  await store.close()
}

describe('SQLite WAL checkpointer', () => {
  it('keeps the WAL file bounded under sustained writes', async () => {
    const file = join(tempDir(), 'a.db')
    const c = client(file)
    const first = await writeUntilReset(c, file)
    // 300 transactions append ~4,500 frames (18 MB): without resets the WAL file would hold them all.
    const growth = await write(c, file, first + 1, 300)
    const frames = walFrames(file)
    await c.close()
    expect(growth).toBeLessThan(500 * PAGE)
    expect(frames).toBeLessThan(500)
    await verify(file, first + 6000)
  })

  it('goes on committing while a reader pins the WAL, and resets the WAL once the reader is done', async () => {
    const file = join(tempDir(), 'a.db')
    const c = client(file)
    const first = await writeUntilReset(c, file)
    const reader = new DatabaseSync(file)
    reader.exec('BEGIN')
    expect(reader.prepare('SELECT count(*) AS n FROM audit_log').get()).toMatchObject({ n: first })
    // The reader's snapshot keeps every later frame in the WAL: commits must go on regardless.
    await write(c, file, first + 1, 100)
    const pinned = walFrames(file)
    expect(pinned).toBeGreaterThan(1000)
    expect(reader.prepare('SELECT count(*) AS n FROM audit_log').get()).toMatchObject({ n: first })
    reader.exec('COMMIT')
    reader.close()
    await write(c, file, first + 2001, 100)
    const after = walFrames(file)
    await c.close()
    expect(after).toBeLessThan(500)
    await verify(file, first + 4000)
  })
})

describe('WalCheckpointer without its thread', () => {
  it('turns the writer connection\'s automatic checkpoint back on when the checkpointer thread fails', async () => {
    const file = join(tempDir(), 'a.db')
    const db = new DatabaseSync(file)
    db.exec('PRAGMA journal_mode = WAL')
    const autocheckpoint = () => (db.prepare('PRAGMA wal_autocheckpoint').get() as { wal_autocheckpoint: number }).wal_autocheckpoint
    // The thread cannot open this path (a directory that does not exist), so it dies at start.
    const cp = new WalCheckpointer(db, { file: join(tempDir(), 'missing', 'dir', 'a.db'), synchronous: 'full' })
    expect(autocheckpoint()).toBe(0)
    for (let i = 0; i < 100 && autocheckpoint() === 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(autocheckpoint()).toBe(10_000)
    cp.afterCommit() // a no-op once failed, not an error
    await cp.close()
    db.close()
  })
})
