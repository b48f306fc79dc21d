// The writer thread's WAL checkpointing (sqlite_checkpointer.ts): the writer never checkpoints inside a
// commit, yet the WAL file stays bounded under sustained writes, and a reader that pins the WAL neither
// stalls commits nor keeps the WAL from resetting once it lets go. The checkpointer thread starts only
// once the WAL is long enough to need it.
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { DEFAULT_GROUP_COMMIT } from '../../src/storage/group_commit.ts'
import { WalCheckpointer, type CheckpointTuning } from '../../src/storage/sqlite_checkpointer.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { openSqliteDb, SqliteChainWriter } from '../../src/storage/sqlite_writer.ts'
import { SqliteWriterClient } from '../../src/storage/sqlite_writer_client.ts'
import { tempDir } from '../support/tmp.ts'

const PAGE = 4096
/** SQLite's automatic checkpoint as the store opens its connections: every 10,000 WAL pages. */
const AUTO_PAGES = 10_000
const TUNING: CheckpointTuning = { passIntervalMs: 2, restartFrames: 100, finishAfterPassMs: 1000, startFrames: 300 }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

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

/** Frames the WAL file has room for, from its size (32-byte file header, 24-byte header per frame). */
function walFileFrames(file: string): number {
  const size = statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0
  return Math.max(0, Math.floor((size - 32) / (PAGE + 24)))
}

/** The writer connection as the writer thread has it, with a checkpointer on it, in this thread. */
function openWriter(file: string, tuning: CheckpointTuning) {
  const db = openSqliteDb({ file })
  const writer = new SqliteChainWriter(db)
  const cp = new WalCheckpointer(db, { file, synchronous: 'full', tuning })
  let n = 0
  return {
    db, cp,
    autocheckpoint: () => (db.prepare('PRAGMA wal_autocheckpoint').get() as { wal_autocheckpoint: number }).wal_autocheckpoint,
    /** One transaction of `records` records, then what the writer thread does between commits. */
    commit(records: number) {
      writer.commit(Array.from({ length: records }, () => ({ kind: 'event' as const, json: JSON.stringify(event(++n)) })))
      cp.afterCommit()
    },
  }
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

describe('starting the checkpointer thread when the WAL needs it', () => {
  it('leaves a store that commits a few records to SQLite\'s automatic checkpoint, without the thread', async () => {
    const file = join(tempDir(), 'a.db')
    const w = openWriter(file, { ...TUNING, startFrames: 1000 })
    for (let i = 0; i < 20; i++) { w.commit(1); await sleep(3) }
    expect(walFileFrames(file)).toBeLessThan(1000)
    expect(w.autocheckpoint()).toBe(AUTO_PAGES)
    expect(w.cp.started).toBe(false)
    await w.cp.close()
    w.db.close()
  })

  it('copies nothing into the database file while a store commits a few records', async () => {
    const file = join(tempDir(), 'a.db')
    const c = client(file)
    await write(c, file, 1, 1)
    const before = readFileSync(file)
    // A running checkpointer thread copies these commits into the database file within a pass or two.
    for (let w = 1; w <= 4; w++) { await sleep(10); await write(c, file, 1 + w * 20, 1) }
    let changed = false
    for (let i = 0; i < 50 && !changed; i++) { await sleep(20); changed = !readFileSync(file).equals(before) }
    expect(changed).toBe(false)
    await c.close()
    await verify(file, 100)
  })

  it('starts the thread once the WAL reaches startFrames, then resets the WAL as before', async () => {
    const file = join(tempDir(), 'a.db')
    const w = openWriter(file, TUNING)
    let startedAt = -1
    for (let i = 0; i < 200 && startedAt < 0; i++) {
      const frames = walFileFrames(file)
      w.commit(20)
      if (w.cp.started) startedAt = frames
      else expect(walFileFrames(file)).toBeLessThan(300 + 100) // at most one transaction past the threshold
      await sleep(3)
    }
    expect(startedAt).toBeGreaterThan(0)
    expect(w.autocheckpoint()).toBe(0)
    // The thread's passes and the writer's finishing-off then keep the WAL file from growing.
    let still = 0
    for (let i = 0; i < 500 && still < 10; i++) {
      const size = statSync(`${file}-wal`).size
      w.commit(20)
      still = statSync(`${file}-wal`).size === size ? still + 1 : 0
      await sleep(2)
    }
    expect(still).toBe(10)
    await w.cp.close()
    w.db.close()
    expect(walFrames(file)).toBe(0) // the last connection to close checkpointed and removed the WAL
  })

  it('closes at once when the thread never started, and starts none after close', async () => {
    const file = join(tempDir(), 'a.db')
    const w = openWriter(file, { ...TUNING, startFrames: 1 })
    const closed = await Promise.race([w.cp.close().then(() => 'closed'), sleep(2000).then(() => 'hung')])
    expect(closed).toBe('closed')
    w.commit(20) // the WAL is past startFrames now
    await sleep(5)
    w.commit(20)
    expect(w.autocheckpoint()).toBe(AUTO_PAGES)
    expect(w.cp.started).toBe(false)
    w.db.close()
    await verify(file, 40)
  })

  it('closes a store that committed a few records, its thread never started', async () => {
    const file = join(tempDir(), 'a.db')
    const c = client(file)
    await write(c, file, 1, 2)
    const closed = await Promise.race([c.close().then(() => 'closed'), sleep(5000).then(() => 'hung')])
    expect(closed).toBe('closed')
    await verify(file, 40)
  })
})

describe('WalCheckpointer without its thread', () => {
  it('turns the writer connection\'s automatic checkpoint back on when the checkpointer thread fails', async () => {
    const file = join(tempDir(), 'a.db')
    const w = openWriter(file, TUNING)
    // The thread cannot open this path (a directory that does not exist), so it dies at start.
    const cp = new WalCheckpointer(w.db, { file: join(tempDir(), 'missing', 'dir', 'a.db'), synchronous: 'full', tuning: { startFrames: 0 } })
    expect(w.autocheckpoint()).toBe(AUTO_PAGES)
    cp.afterCommit()
    expect(cp.started).toBe(true)
    expect(w.autocheckpoint()).toBe(0)
    for (let i = 0; i < 100 && w.autocheckpoint() === 0; i++) await sleep(20)
    expect(w.autocheckpoint()).toBe(AUTO_PAGES)
    cp.afterCommit() // a no-op once failed, not an error
    await cp.close()
    await w.cp.close()
    w.db.close()
  })
})
