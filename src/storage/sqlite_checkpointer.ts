import { statSync } from 'node:fs'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { Worker } from 'node:worker_threads'
import { AUTOCHECKPOINT_PAGES, type SqliteSynchronous } from './sqlite_writer.ts'


/** Slots of the Int32Array that the writer thread and the checkpointer thread share. */
export const SLOT = { requested: 0, done: 1, log: 2, checkpointed: 3, micros: 4, stop: 5 } as const

export interface CheckpointerData { file: string; synchronous: SqliteSynchronous; state: SharedArrayBuffer }

export interface CheckpointTuning {
  /** Start a background pass at most this often while commits go on. */
  passIntervalMs?: number
  /** Reset the WAL once a pass finds it at least this many frames (pages) long: bounds the WAL file. */
  restartFrames?: number
  /** Finish off (on the writer) only after a pass this short; a longer one left more behind. */
  finishAfterPassMs?: number
  /** Start the checkpointer thread once the WAL is this many frames long; until then SQLite checkpoints. */
  startFrames?: number
}

/**
 * Measured at 32 connections on 2 cores (POST /token under wrk, as in npm run bench): the WAL grows
 * ~12k frames/s and a 100 ms pass takes 2-10 ms off the writer. The WAL file peaks ~2,000 frames above `restartFrames`, so
 * 8,000 keeps it near the ~40 MiB that the automatic checkpoint at AUTOCHECKPOINT_PAGES allowed.
 *
 * `startFrames`: the thread (a V8 isolate, 10-13 MB resident) only pays off where the automatic checkpoint
 * would stall a commit, i.e. once the WAL heads for AUTOCHECKPOINT_PAGES. The WAL is looked at once per
 * `passIntervalMs`, in which it grows up to ~1,200 frames at the rate above, and the thread's first passes
 * should be done well before `restartFrames`, so that a loaded broker reaches the same steady state as
 * with the thread from the start. 1,000 frames (~4 MiB) does both with room to spare, within ~0.1 s of
 * load, while a broker that records a token now and then (~6 frames per single-record commit) runs
 * without the thread for its first ~170 such commits; once started, the thread stays until shutdown.
 */
export const DEFAULT_CHECKPOINT_TUNING: Required<CheckpointTuning> = { passIntervalMs: 100, restartFrames: 8000, finishAfterPassMs: 3, startFrames: 1000 }

/** Bytes before the first frame of a WAL file, and before each frame's page (https://www.sqlite.org/fileformat.html, "WAL File Format"). */
const WAL_HEADER_BYTES = 32
const WAL_FRAME_HEADER_BYTES = 24

/**
 * Keeps WAL checkpoints out of the audit writer's commits. With SQLite's automatic checkpoint, every
 * ~10,000 frames one COMMIT also copied the WAL back into the database file and fsynced it (~20-40 ms),
 * and every request waiting on that commit waited too: it set the p99 of POST /token. Here a second
 * connection in its own thread (sqlite_checkpointer_thread.ts) does that copying with PASSIVE
 * checkpoints, which run beside commits.
 *
 * PASSIVE checkpoints alone never let the WAL reset under steady writes: SQLite starts the WAL over only
 * when a write transaction begins with every frame already copied back, and by the time a pass ends the
 * writer has appended more. So once the WAL is `restartFrames` long and a short pass has caught up with
 * it, the writer checkpoints the few frames appended during that pass itself, between two commits, and
 * its next BEGIN starts the WAL from the beginning (https://www.sqlite.org/wal.html, "Avoiding
 * Excessively Large WAL Files"). That costs one commit ~1-3 ms about once a second instead of ~20 ms.
 * Durability is unchanged: every commit still fsyncs the WAL (synchronous FULL), a checkpoint copies
 * only committed frames and fsyncs the database file before the WAL may be reused, and the single
 * writer connection still orders the chain.
 *
 * Runs on the writer thread; `afterCommit` is called between commits, after the batch's reply is sent.
 * The thread is started only once the WAL reaches `startFrames`: until then the writer connection keeps
 * SQLite's automatic checkpoint (AUTOCHECKPOINT_PAGES), which bounds the WAL and, below that length,
 * never runs inside a commit. If the checkpointer thread fails, the writer's automatic checkpoint comes
 * back on (slower commits again, but a bounded WAL).
 */
export class WalCheckpointer {
  readonly #db: DatabaseSync
  readonly #finish: StatementSync
  readonly #state: Int32Array
  readonly #workerData: CheckpointerData
  readonly #tuning: Required<CheckpointTuning>
  readonly #frameBytes: number
  #worker: Worker | undefined
  #exited: Promise<void> = Promise.resolve()
  #lastLookAt = -Infinity
  #lastRequestAt = -Infinity
  #seen = 0
  #failed = false
  #closed = false

  constructor(db: DatabaseSync, options: { file: string; synchronous: SqliteSynchronous; tuning?: CheckpointTuning }) {
    this.#db = db
    this.#tuning = { ...DEFAULT_CHECKPOINT_TUNING, ...options.tuning }
    this.#finish = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
    const { page_size: pageSize } = db.prepare('PRAGMA page_size').get() as { page_size: number }
    this.#frameBytes = pageSize + WAL_FRAME_HEADER_BYTES
    const buffer = new SharedArrayBuffer(Object.keys(SLOT).length * Int32Array.BYTES_PER_ELEMENT)
    this.#state = new Int32Array(buffer)
    this.#workerData = { file: options.file, synchronous: options.synchronous, state: buffer }
  }

  /** Whether the checkpointer thread has been started (it may have failed or stopped since). */
  get started(): boolean {
    return this.#worker !== undefined
  }

  /** Between two commits: start a background pass, or finish one off so that the WAL resets. */
  afterCommit(): void {
    if (this.#failed || this.#closed) return
    if (!this.#worker) {
      this.#maybeStart()
      return
    }
    const st = this.#state
    const requested = Atomics.load(st, SLOT.requested)
    if (Atomics.load(st, SLOT.done) !== requested) return // a pass is running
    if (requested !== this.#seen) {
      this.#seen = requested
      const log = Atomics.load(st, SLOT.log)
      if (log >= this.#tuning.restartFrames && Atomics.load(st, SLOT.checkpointed) === log) {
        if (Atomics.load(st, SLOT.micros) > this.#tuning.finishAfterPassMs * 1000) {
          // Caught up, but the writer appended much during that long pass: one more (shorter) pass first.
          this.#request(requested)
          return
        }
        // Copy the remainder here, while no pass runs, so that the next BEGIN finds the WAL fully
        // checkpointed and resets it. Failing here only postpones the reset, as a failed automatic
        // checkpoint would; the commits themselves were already durable.
        try { this.#finish.get() } catch { /* the next pass tries again */ }
        return
      }
    }
    if (performance.now() - this.#lastRequestAt >= this.#tuning.passIntervalMs) this.#request(requested)
  }

  /** Stops the checkpointer thread, if it was started, once its current pass (if any) has ended. */
  async close(): Promise<void> {
    this.#closed = true
    Atomics.store(this.#state, SLOT.stop, 1)
    Atomics.notify(this.#state, SLOT.requested)
    await this.#exited
  }

  /**
   * Starts the thread once the WAL file holds `startFrames` frames. The file's size is one stat, no
   * SQLite call (a wal_checkpoint pragma would report the length, but would checkpoint on the writer,
   * the very work to keep off it). SQLite reuses the WAL file after a reset without truncating it, so
   * the size is the longest the WAL has been since the file was created; until the thread runs only
   * the automatic checkpoint at AUTOCHECKPOINT_PAGES resets it, so the size reaches `startFrames` when
   * the WAL first does. A WAL left long by a crash starts the thread at once, which is only early.
   */
  #maybeStart(): void {
    const now = performance.now()
    if (now - this.#lastLookAt < this.#tuning.passIntervalMs) return
    this.#lastLookAt = now
    let size: number
    try {
      size = statSync(`${this.#workerData.file}-wal`, { throwIfNoEntry: false })?.size ?? 0
    } catch {
      return // unreadable for now: the automatic checkpoint stays on, look again later
    }
    if (Math.max(0, size - WAL_HEADER_BYTES) / this.#frameBytes < this.#tuning.startFrames) return
    let worker: Worker
    try {
      const ext = extname(fileURLToPath(import.meta.url))
      worker = new Worker(new URL(`./sqlite_checkpointer_thread${ext}`, import.meta.url), { workerData: this.#workerData })
    } catch {
      this.#failed = true // the automatic checkpoint was never turned off
      return
    }
    this.#worker = worker
    this.#exited = new Promise((resolve) => worker.once('exit', () => { this.#fallBack(); resolve() }))
    worker.on('error', () => this.#fallBack())
    this.#db.exec('PRAGMA wal_autocheckpoint = 0')
    // Ask for a first pass now: the thread serves it as soon as it is up.
    this.#request(Atomics.load(this.#state, SLOT.requested))
  }

  #request(requested: number): void {
    this.#lastRequestAt = performance.now()
    Atomics.store(this.#state, SLOT.requested, requested + 1)
    Atomics.notify(this.#state, SLOT.requested)
  }

  #fallBack(): void {
    if (this.#failed) return
    this.#failed = true
    try { this.#db.exec(`PRAGMA wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`) } catch { /* closed already */ }
  }
}
