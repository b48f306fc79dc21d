// Worker-thread entry for the SQLite audit writer. node:sqlite is synchronous: inserting and fsyncing a
// batch on the main thread would stall every request for the duration. Here the commit runs beside the
// event loop, which keeps minting meanwhile.
//
// The thread pulls rather than being handed batches: the main thread streams ops as they are produced,
// and the moment a commit ends this thread takes everything that arrived during it as the next batch.
// When the main thread formed the batches, the writer sat idle ~1 ms per cycle waiting for a busy event
// loop to read the reply and send the next batch (half of each cycle at 32 connections, npm run bench).
import { parentPort, workerData } from 'node:worker_threads'
import type { SqliteWriteOp } from './write_ops.ts'
import { auditMacKey, type AuditMacKey } from '../audit/record_mac.ts'
import { WalCheckpointer, type CheckpointTuning } from './sqlite_checkpointer.ts'
import { openSqliteDb, SqliteChainWriter, wallClockMs, type AppendedRows, type OpResult, type SqliteOpenOptions } from './sqlite_writer.ts'

export interface WriterOptions extends SqliteOpenOptions {
  /** Most ops per transaction. */
  maxBatch: number
  /** Wait this long for a batch to fill before committing (0: take what has arrived). */
  maxWaitMs: number
  /** Background WAL checkpointing (sqlite_checkpointer.ts); defaults suit the bench. */
  checkpoint?: CheckpointTuning
  /** Shared with the main thread: 1 while this thread has nothing to commit (sqlite_writer_client.ts). */
  idle?: Int32Array
  /** The audit MAC key: every record appended carries its MAC (record_mac.ts). */
  auditMac?: AuditMacKey
}

/** Ops numbered `first`, `first + 1`, … (numbers are consecutive across messages). */
export interface WriterSubmit { first: number; ops: SqliteWriteOp[] }
/**
 * Ops `first`..`last` committed in one transaction (with the results of revoke/prune ops by number, and
 * the rows appended), or all failed with `error` (and, from SQLite, its result code: store_outage.ts tells an outage by it).
 */
export type WriterReply =
  | { first: number; last: number; results: Array<[number, OpResult]>; appended: AppendedRows }
  | { first: number; last: number; error: string; sqlite?: { code: string; errcode: number } }

const options = workerData as WriterOptions
const db = openSqliteDb(options)
// Structured cloning hands the key over as a Uint8Array: made a Buffer again (and its id re-derived) here.
const writer = new SqliteChainWriter(db, options.auditMac ? auditMacKey(Buffer.from(options.auditMac.key)) : undefined)
const checkpointer = new WalCheckpointer(db, {
  file: options.file, synchronous: options.synchronous ?? 'full', ...(options.checkpoint ? { tuning: options.checkpoint } : {}),
})
const queue: SqliteWriteOp[] = []
let queueFirst = 0
let scheduled = false

function schedule(): void {
  if (queue.length === 0 && !scheduled && options.idle) Atomics.store(options.idle, 0, 1)
  if (scheduled || queue.length === 0) return
  scheduled = true
  if (options.maxWaitMs > 0 && queue.length < options.maxBatch) setTimeout(commitNext, options.maxWaitMs)
  else setImmediate(commitNext)
}

function commitNext(): void {
  scheduled = false
  const batch = queue.splice(0, options.maxBatch)
  const first = queueFirst
  const last = first + batch.length - 1
  queueFirst = last + 1
  let reply: WriterReply
  try {
    const { results, appended } = writer.commit(batch)
    const keyed: Array<[number, OpResult]> = []
    results.forEach((r, i) => { if (r !== null) keyed.push([first + i, r]) })
    reply = { first, last, results: keyed, appended: { ...appended, committedAt: wallClockMs() } }
  } catch (err) {
    const { code, errcode } = err as { code?: unknown; errcode?: unknown }
    const sqlite = code === 'ERR_SQLITE_ERROR' && typeof errcode === 'number' ? { sqlite: { code, errcode } } : {}
    reply = { first, last, error: (err as Error).message ?? String(err), ...sqlite }
  }
  parentPort!.postMessage(reply)
  // After the reply, so that the requests of this batch never wait for checkpoint work.
  checkpointer.afterCommit()
  // Yield before the next batch so the ops that arrived during this commit are read in first.
  schedule()
}

parentPort!.on('message', (msg: WriterSubmit | 'close') => {
  if (msg === 'close') {
    void checkpointer.close().then(() => { db.close(); parentPort!.close() })
    return
  }
  if (queue.length === 0) queueFirst = msg.first
  for (const op of msg.ops) queue.push(op)
  schedule()
})
