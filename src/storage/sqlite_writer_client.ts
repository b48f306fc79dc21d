import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { returnsResult, type SqliteWriteOp } from './write_ops.ts'
import { StoreOverloaded, type CommitStats, type Committer, type GroupCommitOptions } from './group_commit.ts'
import type { CheckpointTuning } from './sqlite_checkpointer.ts'
import { StoreClosed, WriterGone } from './store_outage.ts'
import type { AuditMacKey } from '../audit/record_mac.ts'
import type { AppendedRows, SqliteOpenOptions } from './sqlite_writer.ts'
import type { WriterOptions, WriterReply, WriterSubmit } from './sqlite_writer_thread.ts'

interface Pending { op: SqliteWriteOp; resolve: () => void; reject: (err: Error) => void }

/**
 * The main thread's side of the SQLite writer thread: numbers each op, streams ops to the thread (while
 * it is busy, those collected until the turn ends or it is idle again, as one message), and settles them
 * as the thread reports their transactions. Commits come back in submission order, so the waiting ops
 * are a plain FIFO. If the thread dies, every waiting and later write fails: fail closed. Keeps the
 * process alive only while writes wait.
 */
export class SqliteWriterClient implements Committer<SqliteWriteOp> {
  readonly #worker: Worker
  readonly #maxPending: number
  /** Submitted, not yet settled, oldest first; `#waiting[0]` has number `#firstWaiting`. */
  #waiting: Pending[] = []
  #firstWaiting = 1
  #outbox: SqliteWriteOp[] = []
  #outboxFirst = 1
  #flushScheduled = false
  #flushSoon = false
  /** Set by the thread when it has nothing to commit, cleared here when ops are posted to it (a hint only). */
  readonly #threadIdle = new Int32Array(new SharedArrayBuffer(4))
  #closed = false
  #dead: Error | undefined
  #drained: Array<() => void> = []
  #batches = 0
  #items = 0
  readonly #onAppended: ((rows: AppendedRows) => void) | undefined
  onBatch: ((items: number) => void) | undefined
  onStopped: ((reason: string) => void) | undefined

  /** `onAppended` hears of every committed transaction's rows before their writes settle. */
  constructor(options: SqliteOpenOptions & { groupCommit: GroupCommitOptions; checkpoint?: CheckpointTuning; onAppended?: (rows: AppendedRows) => void; auditMac?: AuditMacKey }) {
    const { groupCommit, onAppended, ...open } = options
    this.#onAppended = onAppended
    Atomics.store(this.#threadIdle, 0, 1)
    // The key goes to the thread as bytes (a KeyObject cannot cross), where each record's hash and MAC are made.
    const workerData: WriterOptions = { ...open, maxBatch: groupCommit.maxBatch, maxWaitMs: groupCommit.maxWaitMs, idle: this.#threadIdle }
    this.#maxPending = groupCommit.maxPending
    const ext = extname(fileURLToPath(import.meta.url))
    this.#worker = new Worker(new URL(`./sqlite_writer_thread${ext}`, import.meta.url), { workerData })
    this.#worker.on('message', (m: WriterReply) => this.#settle(m))
    this.#worker.on('error', (err: Error) => this.#die(new WriterGone(`audit writer thread failed: ${err.message}`)))
    this.#worker.on('exit', () => this.#die(new WriterGone('audit writer thread has stopped')))
    this.#worker.unref()
  }

  submit(op: SqliteWriteOp): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreClosed())
    if (this.#dead) return Promise.reject(this.#dead)
    if (this.#waiting.length >= this.#maxPending) return Promise.reject(new StoreOverloaded(this.#waiting.length))
    return new Promise<void>((resolve, reject) => {
      if (this.#waiting.length === 0) this.#worker.ref()
      this.#waiting.push({ op, resolve, reject })
      if (this.#outbox.length === 0) this.#outboxFirst = this.#firstWaiting + this.#waiting.length - 1
      this.#outbox.push(op)
      // With nothing in the thread's hands, post at the end of this task: the thread starts committing
      // while the event loop goes on with the other requests read in this turn. Otherwise collect the
      // turn's ops into one message, unless the thread reports (through shared memory: its reply waits
      // for the turn's end) that its commit ended meanwhile; then post what has been collected so far.
      // One turn of the event loop reads every request wrk's 32 connections sent; when the thread had
      // to wait for the turn's end, it committed one record, sat idle while the turn went on, then
      // committed the other ~30 while the event loop sat idle in turn (A/B at 32 connections, 10 s,
      // interleaved: startd IDTOKEN 13.2-13.8k against 12.1-12.6k req/s, SciToken 9.1-9.3k against
      // 8.9-9.0k; batches of 7 records on average instead of 12, the writer +6 µs per record.)
      if (!this.#flushScheduled) {
        this.#flushScheduled = true
        if (Atomics.load(this.#threadIdle, 0) === 1) queueMicrotask(() => this.#flush())
        else setImmediate(() => this.#flush())
      } else if (!this.#flushSoon && Atomics.load(this.#threadIdle, 0) === 1) {
        this.#flushSoon = true
        queueMicrotask(() => this.#flush())
      }
    })
  }

  #flush(): void {
    this.#flushScheduled = false
    this.#flushSoon = false
    if (this.#outbox.length === 0 || this.#dead) return
    const msg: WriterSubmit = { first: this.#outboxFirst, ops: this.#outbox }
    this.#outbox = []
    Atomics.store(this.#threadIdle, 0, 0)
    this.#worker.postMessage(msg)
  }

  #settle(m: WriterReply): void {
    if (m.first !== this.#firstWaiting) { this.#die(new Error(`audit writer out of step: committed ${m.first}, expected ${this.#firstWaiting}`)); return }
    const done = this.#waiting.splice(0, m.last - m.first + 1)
    this.#firstWaiting = m.last + 1
    if ('error' in m) {
      // The SQLite result code crosses from the thread so that an outage (busy, full, I/O) can be told
      // from a bug (store_outage.ts); the message alone would not say which.
      const err = Object.assign(new Error(`audit write failed: ${m.error}`), m.sqlite ?? {})
      for (const p of done) p.reject(err)
    } else {
      this.#batches++
      this.#items += done.length
      this.onBatch?.(done.length)
      for (const [n, result] of m.results) {
        const op = done[n - m.first]?.op
        if (op && returnsResult(op)) op.result = result as never
      }
      this.#onAppended?.(m.appended)
      for (const p of done) p.resolve()
    }
    this.#afterSettle()
  }

  #afterSettle(): void {
    if (this.#waiting.length > 0) return
    this.#worker.unref()
    for (const f of this.#drained.splice(0)) f()
  }

  #die(err: Error): void {
    // The thread exits after close() asked it to: that is the orderly end, not a write path lost.
    if (this.#dead === undefined && !this.#closed) queueMicrotask(() => this.onStopped?.(err.message))
    this.#dead ??= err
    const failed = this.#waiting.splice(0)
    this.#firstWaiting += failed.length
    this.#outbox = []
    for (const p of failed) p.reject(this.#dead)
    this.#afterSettle()
  }

  stats(): CommitStats {
    return { batches: this.#batches, items: this.#items, pending: this.#waiting.length }
  }

  stopped(): string | undefined {
    return this.#dead?.message
  }

  /** The writer thread itself, for tests that must kill it as a crash would. */
  get thread(): Worker {
    return this.#worker
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#waiting.length > 0) await new Promise<void>((r) => this.#drained.push(r))
    if (this.#dead) return
    // Hold the process open until the thread has closed the database.
    this.#worker.ref()
    const exited = new Promise<void>((r) => this.#worker.once('exit', () => r()))
    this.#worker.postMessage('close')
    await exited
  }
}
