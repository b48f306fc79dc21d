import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite'
import type { AuditPage, AuditQuery } from '../audit/audit_log.ts'
import { rowToRecord, type StoredRow } from '../audit/chain.ts'
import type { Revocation } from '../revocation/revocation.ts'
import { ChainedStore, assertPageSize, decodeCursor, encodeCursor, equalityFilters, type WriteOp } from './chained_store.ts'
import type { GroupCommitOptions } from './group_commit.ts'
import { openSqliteDb, SqliteChainWriter, type OpResult, type SqliteSynchronous } from './sqlite_writer.ts'
import type { WriterReply, WriterRequest } from './sqlite_writer_thread.ts'

export type { SqliteSynchronous } from './sqlite_writer.ts'

export interface SqliteStoreOptions {
  file: string
  synchronous?: SqliteSynchronous
  groupCommit?: Partial<GroupCommitOptions>
  /** How long a writer waits for another process's write lock (e.g. the CLI revoking while serving). */
  busyTimeoutMs?: number
  /**
   * thread (default): inserts and fsync run in a worker thread, so the event loop keeps serving while a
   * batch commits; inline: on the calling thread (CLI, tests of the writer itself).
   */
  writer?: 'thread' | 'inline'
}

const SCAN_CHUNK = 5000

/** The embedded default: one file under data/, WAL, group commit. */
export class SqliteStore extends ChainedStore {
  readonly backend = 'sqlite' as const
  readonly #db: DatabaseSync
  readonly #head: StatementSync
  readonly #inline: SqliteChainWriter | undefined
  readonly #thread: WriterThread | undefined

  constructor(options: SqliteStoreOptions) {
    super(options.groupCommit)
    // Opening here (synchronously) creates or migrates the schema before the writer thread connects.
    this.#db = openSqliteDb(options)
    this.#head = this.#db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1')
    if ((options.writer ?? 'thread') === 'inline') this.#inline = new SqliteChainWriter(this.#db)
    else this.#thread = new WriterThread({ file: options.file, synchronous: options.synchronous ?? 'full', busyTimeoutMs: options.busyTimeoutMs ?? 5000 })
  }

  protected async commitBatch(ops: WriteOp[]): Promise<void> {
    const results = this.#inline ? this.#inline.commit(ops) : await this.#thread!.commit(ops)
    ops.forEach((op, i) => { if (op.kind !== 'event') op.result = results[i] as never })
  }

  protected async *scanRows(fromSeq: number): AsyncIterable<StoredRow> {
    const stmt = this.#db.prepare('SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?')
    let next = fromSeq
    for (;;) {
      const rows = stmt.all(next, SCAN_CHUNK) as unknown as StoredRow[]
      for (const r of rows) yield r
      if (rows.length < SCAN_CHUNK) return
      next = rows.at(-1)!.seq + 1
    }
  }

  protected async readHead(): Promise<{ seq: number; hash: string }> {
    return this.#head.get() as { seq: number; hash: string }
  }

  async query(q: AuditQuery): Promise<AuditPage> {
    assertPageSize(q.limit)
    const where: string[] = []
    const args: SQLInputValue[] = []
    for (const [col, v] of equalityFilters(q)) {
      // A literal, not a parameter: only then can SQLite prove the partial index audit_denied applies.
      if (col === 'decision') where.push(v === 'deny' ? "decision = 'deny'" : "decision = 'allow'")
      else { where.push(`${col} = ?`); args.push(v) }
    }
    if (q.from !== undefined) { where.push('time >= ?'); args.push(q.from) }
    if (q.to !== undefined) { where.push('time <= ?'); args.push(q.to) }
    if (q.cursor !== undefined) {
      const c = decodeCursor(q.cursor)
      where.push('(time, seq) < (?, ?)')
      args.push(c.time, c.seq)
    }
    const sql = `SELECT seq, time, body, prev_hash, hash FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, seq DESC LIMIT ?`
    const rows = this.#db.prepare(sql).all(...args, q.limit + 1) as unknown as StoredRow[]
    const page = rows.slice(0, q.limit)
    const last = page.at(-1)
    return {
      records: page.map(rowToRecord),
      ...(rows.length > q.limit && last ? { nextCursor: encodeCursor(last.time, last.seq) } : {}),
    }
  }

  async listRevocations(options: { activeAt?: number } = {}): Promise<Revocation[]> {
    const rows = (options.activeAt === undefined
      ? this.#db.prepare('SELECT * FROM revocations ORDER BY id').all()
      : this.#db.prepare('SELECT * FROM revocations WHERE until >= ? ORDER BY id').all(options.activeAt)) as unknown as RevocationRow[]
    return rows.map(fromRevocationRow)
  }

  async roleGenerations(): Promise<Map<string, number>> {
    const rows = this.#db.prepare('SELECT role, gen FROM role_generations').all() as Array<{ role: string; gen: number }>
    return new Map(rows.map((r) => [r.role, r.gen]))
  }

  protected async closeBackend(): Promise<void> {
    await this.#thread?.close()
    try { this.#db.exec('PRAGMA optimize') } catch { /* best effort: statistics only */ }
    this.#db.close()
  }
}

export interface RevocationRow {
  id: number | string
  kind: Revocation['kind']
  value: string
  revoked_at: number | string
  until: number | string
  gen: number | string | null
  reason: string | null
  revoked_by: string | null
}

export function fromRevocationRow(r: RevocationRow): Revocation {
  return {
    id: Number(r.id), kind: r.kind, value: r.value, revokedAt: Number(r.revoked_at), until: Number(r.until),
    ...(r.gen !== null ? { gen: Number(r.gen) } : {}),
    ...(r.reason !== null ? { reason: r.reason } : {}),
    ...(r.revoked_by !== null ? { revokedBy: r.revoked_by } : {}),
  }
}

/**
 * The writer thread: one batch in flight at a time (the GroupCommitter guarantees it). Keeps the process
 * alive only while a commit is in flight. If the thread dies, every later commit fails: fail closed.
 */
class WriterThread {
  readonly #worker: Worker
  readonly #ready: Promise<void>
  #pending = new Map<number, { resolve: (r: OpResult[]) => void; reject: (e: Error) => void }>()
  #nextId = 1
  #inflight = 0
  #dead: Error | undefined

  constructor(options: { file: string; synchronous: SqliteSynchronous; busyTimeoutMs: number }) {
    const ext = extname(fileURLToPath(import.meta.url))
    this.#worker = new Worker(new URL(`./sqlite_writer_thread${ext}`, import.meta.url), { workerData: options })
    let ready!: () => void
    this.#ready = new Promise<void>((r) => { ready = r })
    this.#worker.on('message', (m: WriterReply) => {
      if (m.id === 0) { ready(); return }
      const p = this.#pending.get(m.id)
      this.#pending.delete(m.id)
      if ('error' in m) p?.reject(new Error(`audit write failed: ${m.error}`))
      else p?.resolve(m.results as OpResult[])
    })
    const die = (err: Error) => {
      this.#dead ??= err
      ready()
      for (const p of this.#pending.values()) p.reject(this.#dead)
      this.#pending.clear()
    }
    this.#worker.on('error', (err: Error) => die(new Error(`audit writer thread failed: ${err.message}`)))
    this.#worker.on('exit', () => die(new Error('audit writer thread has stopped')))
    this.#worker.unref()
  }

  async commit(ops: WriteOp[]): Promise<OpResult[]> {
    // Keep the process alive from the first await until the reply: a caller awaiting its record must not
    // see the process exit under it.
    this.#inflight++
    this.#worker.ref()
    try {
      await this.#ready
      if (this.#dead) throw this.#dead
      const id = this.#nextId++
      return await new Promise<OpResult[]>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject })
        this.#worker.postMessage({ id, ops } satisfies WriterRequest)
      })
    } finally {
      if (--this.#inflight === 0) this.#worker.unref()
    }
  }

  async close(): Promise<void> {
    // Hold the process open while waiting: a read-only CLI command never committed, so the unref'd
    // worker may not have said it is ready yet, and Node would exit (status 13) under the await.
    this.#worker.ref()
    await this.#ready
    if (this.#dead) return
    const exited = new Promise<void>((r) => this.#worker.once('exit', () => r()))
    this.#worker.postMessage('close')
    await exited
  }
}
