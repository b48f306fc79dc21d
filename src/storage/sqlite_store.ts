import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite'
import type { Worker } from 'node:worker_threads'
import type { AuditPage, AuditQuery, PruneResult } from '../audit/audit_log.ts'
import { assertCountQuery, COUNTED_TYPES_SQL, type CountQuery, type CountRow, type LiveRow, type ReasonRow } from '../audit/aggregate.ts'
import type { ChainHead, StoredRow } from '../audit/chain.ts'
import type { IssuanceHorizons, Revocation } from '../revocation/revocation.ts'
import { fromSessionRow, type SessionRow, type StoredSession } from '../console/session_store.ts'
import { fromCredentialRow, type CredentialRow, type StoredCredential } from '../credentials/credential_store.ts'
import { ChainedStore } from './chained_store.ts'
import { assertPageSize, decodeCursor, equalityFilters, toPage } from './audit_pages.ts'
import { foundMacFrom, LAST_CHECKPOINT_SQL, MACS_STARTED_SQL } from './mac_era.ts'
import { activeCheckTime, activeRevocationsSql, fromRevocationRow, type RevocationRow } from './revocation_rows.ts'
import { returnsResult, type WriteOp } from './write_ops.ts'
import type { RevocationState } from './chain_source.ts'
import { DEFAULT_GROUP_COMMIT, type GroupCommitOptions } from './group_commit.ts'
import { jtiSecond } from '../lib/jti.ts'
import { JtiIndex, needsJtiEntry } from './jti_index.ts'
import { reseedHorizonsSql } from './issuance_horizon.ts'
import { assertReadAsItLay, openSqliteDb, readSqliteHorizons, rolledBack, SqliteChainWriter, wallClockMs, WRITE_ANCHOR_SQL, type AppendedRows, type SqliteSynchronous } from './sqlite_writer.ts'
import { SqliteWriterClient } from './sqlite_writer_client.ts'
import { compareSqlText, forEachSliceDesc, nextTurn, NO_END, SLICE_ROWS, sumSlices } from './sqlite_slices.ts'
import { asStoreOutage, isStoreOutage } from './store_outage.ts'
import { AuditStoreUnavailable, OperatorError, TemporarilyUnavailable } from '../errors.ts'

import type { AuditMacKey } from '../audit/record_mac.ts'
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
  /** Records per slice of an overview aggregate (default SLICE_ROWS); tests set it low to cut small logs. */
  sliceRows?: number
  /** Appends every record with a MAC under this key, and checks MACs in every chain check (ChainedStore). */
  auditMac?: AuditMacKey
  /** Reads an existing file without writing to it (a command that only reads; openSqliteDb). Inline writer only. */
  readOnly?: boolean
}

/**
 * Rows per step of a scan; the event loop runs between steps. Verifying the chain costs ~7 µs a row, so
 * 500 rows hold the loop ~4 ms (in one go, verifying 1,000,000 records from the console held it ~7 s).
 */
const SCAN_CHUNK = 500

const RESEED_SQL = reseedHorizonsSql('max')

/**
 * How long a read on a serving store's own connection waits for another process's lock. node:sqlite reads on
 * the event loop: a read that waited out the writer's 5 s held every other request for 5 s, one such read
 * after another. A WAL reader meets a lock only while another process rebuilds the WAL index (a recovery,
 * usually milliseconds); one longer than this is answered 503 with Retry-After, and the client comes back.
 */
export const SERVING_READ_BUSY_TIMEOUT_MS = 250

/**
 * After a serving store's read waited out that timeout, how long the reads after it are refused at once (the
 * same 503 with Retry-After) before one tries the file again. Each read waits on the event loop, so a burst of
 * N reads during a lock held the loop N x 250 ms in a row (20 reads: 5.3 s, docs/audit.md); now at most one
 * read in each second waits. A lock this long is no WAL recovery of milliseconds but a stuck process, and the
 * clients told to come back in 5 s (Retry-After) lose nothing to a pause of 1 s.
 */
export const SERVING_READ_LOCK_BACKOFF_MS = 1000

/** Rows read per step while the jti index catches up; the event loop runs between steps (~5 ms each). */
const JTI_CHUNK = 5000

/** The embedded default: one file under data/, WAL, group commit. */
export class SqliteStore extends ChainedStore {
  readonly backend = 'sqlite' as const
  readonly #db: DatabaseSync
  readonly #head: StatementSync
  readonly #jtiInSecond: StatementSync
  readonly #firstSeq: StatementSync
  /** Where the next slice of a time range starts (sqlite_slices.ts). */
  readonly #timeBoundary: StatementSync
  readonly #sliceRows: number
  readonly #inline: SqliteChainWriter | undefined
  readonly #thread: SqliteWriterClient | undefined
  readonly #jti = new JtiIndex()
  /** Highest seq the jti index has seen; rows above it are read in before a lookup. */
  #jtiThrough = 0
  /** Lowest seq still in the log (retention prunes below it): index entries under it may be dropped. */
  #jtiFirstLive = 1
  #jtiCatchUp: Promise<void> | undefined
  readonly #writerBusyTimeoutMs: number
  /**
   * Serving: the last read that waited out another process's lock, until when reads are refused unasked, and
   * when that read began (wallClockMs: the writer thread's commits are timed on the same clock).
   */
  #lockedRead: { until: number; err: unknown; began: number } | undefined

  constructor(options: SqliteStoreOptions) {
    const thread = (options.writer ?? 'thread') === 'thread'
    if (thread && options.readOnly) throw new TypeError('a read-only SQLite store has no writer thread')
    // Opening here (synchronously) creates or migrates the schema before the writer thread connects.
    const db = openSqliteDb(options)
    // Not `this` yet (before super): the callback reaches the store through a holder set just below.
    const self: { store?: SqliteStore } = {}
    const writer = thread
      ? new SqliteWriterClient({
        // The connection above made the file: if it is gone when the thread opens it, nothing takes its place.
        file: options.file, mustExist: true, synchronous: options.synchronous ?? 'full', busyTimeoutMs: options.busyTimeoutMs ?? 5000,
        groupCommit: { ...DEFAULT_GROUP_COMMIT, ...options.groupCommit },
        onAppended: (rows) => { if (self.store) self.store.#committed(rows) },
        ...(options.auditMac ? { auditMac: options.auditMac } : {}),
      })
      : undefined
    const mac = options.auditMac ? { auditMac: options.auditMac } : {}
    super(writer ? { committer: writer, ...mac } : { ...(options.groupCommit ? { groupCommit: options.groupCommit } : {}), ...mac })
    self.store = this
    this.#thread = writer
    this.#db = db
    // Serving (the writer thread commits): this connection reads, and waits as a writer only in #asWriter.
    this.#writerBusyTimeoutMs = options.busyTimeoutMs ?? 5000
    if (writer) db.exec(`PRAGMA busy_timeout = ${Math.min(SERVING_READ_BUSY_TIMEOUT_MS, this.#writerBusyTimeoutMs)}`)
    this.#head = this.#db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1')
    this.#jtiInSecond = this.#db.prepare('SELECT seq FROM audit_log INDEXED BY audit_time_jti WHERE time = ? AND jti = ?')
    this.#firstSeq = this.#db.prepare('SELECT min(seq) AS seq FROM audit_log')
    this.#sliceRows = options.sliceRows ?? SLICE_ROWS
    this.#timeBoundary = this.#db.prepare('SELECT time FROM audit_log WHERE time >= ? AND time < ? ORDER BY time LIMIT 1 OFFSET ?')
    if (!writer) this.#inline = new SqliteChainWriter(this.#db, options.auditMac)
    // A serving broker builds the jti index in the background so the first lookup by jti is quick.
    else this.#catchUpJti().catch(() => { /* retried by the next lookup */ })
  }

  /** The writer thread (thread mode), for tests that must kill it as a crash would. */
  get writerThread(): Worker | undefined {
    return this.#thread?.thread
  }

  /** Inline mode only: the writer thread commits on its own (SqliteWriterClient). */
  protected commitBatch(ops: WriteOp[]): void {
    const { results, appended } = this.#inline!.commit(ops)
    ops.forEach((op, i) => { if (returnsResult(op)) op.result = results[i] as never })
    this.#indexAppended(appended)
  }

  /**
   * The writer thread committed a batch. It took the file's write lock to do so, and reads what a read needs
   * first: whatever lock made a read give up a moment ago is gone, so the pause after it (#lockedRead) ends
   * here. Else the read that follows a commit queued behind that lock (a revocation's refresh, a renewal's
   * answer) was refused for the rest of the pause, and a change that stood was answered "nothing was changed".
   * Only a commit that ended after that read began says so: the thread's reply waits for the loop, which the
   * read held for its whole wait, so a commit made just before another process took the lock is heard after
   * the read gave up on it, and ending the pause then let the next read hold the loop as long again.
   */
  #committed(rows: AppendedRows): void {
    if (this.#lockedRead && rows.committedAt !== undefined && rows.committedAt > this.#lockedRead.began) this.#lockedRead = undefined
    this.#indexAppended(rows)
  }

  /**
   * Our own writer's rows go straight into the jti index when they follow what it holds, so a busy broker
   * never has a long tail to read back before a lookup. A gap (rows of another process, or of commits
   * made while a pass was reading) is left to a pass, which reads it from the log.
   */
  #indexAppended(rows: AppendedRows): void {
    if (this.#jtiCatchUp || rows.firstSeq !== this.#jtiThrough + 1) {
      if (!this.#jtiCatchUp && rows.firstSeq > this.#jtiThrough + 1) this.#catchUpJti().catch(() => { /* retried by the next lookup */ })
      return
    }
    rows.jtis.forEach((jti, i) => { if (jti !== null) this.#jti.add(jti, rows.firstSeq + i, this.#jtiFirstLive) })
    this.#jtiThrough = rows.firstSeq + rows.jtis.length - 1
  }

  protected async *scanRows(fromSeq: number): AsyncIterable<StoredRow> {
    const stmt = await this.#read(() => this.#db.prepare('SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?'))
    let next = fromSeq
    for (let n = 0; ; n++) {
      if (n > 0) await nextTurn()
      const rows = await this.#read(() => stmt.all(next, SCAN_CHUNK) as unknown as StoredRow[])
      for (const r of rows) yield r
      if (rows.length < SCAN_CHUNK) return
      next = rows.at(-1)!.seq + 1
    }
  }

  /**
   * Every read on this process's connection goes through here. A read the database cannot serve right now
   * (its file locked by another process past the busy timeout, failing I/O, a file it cannot open) is the
   * same outage a failed write is: AuditStoreUnavailable, 503 with Retry-After (store_outage.ts tells which
   * failures). The routes that read before they write (a job token's credential, a renewal's lookups, the
   * revocation list, the admin API, the console) then answer as a write would, not 500; anything else is
   * left as it is. PostgresStore's reads do the same.
   */
  async #read<T>(run: () => T | Promise<T>): Promise<T> {
    const began = this.#beginRead()
    try {
      // A transaction open between this connection's statements is one a failed ROLLBACK left (rolledBack):
      // nothing here holds one across a turn. Its rows were never committed, yet this connection would
      // see them, and readRevocationState's BEGIN would fail on it. Rolled back (never committed) first.
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK')
      return await run()
    } catch (err) {
      throw this.#readFailed(err, began)
    }
  }

  /**
   * #read for a read that must finish in this turn (the jti index's pass, whose rows must be in before the
   * next commit's reply is heard): the same refusals, the same pause after a lock, no await.
   */
  #readNow<T>(run: () => T): T {
    const began = this.#beginRead()
    try {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK')
      return run()
    } catch (err) {
      throw this.#readFailed(err, began)
    }
  }

  /** Refuses a read on a closed store, or within the pause after a locked read; else when it began (wallClockMs). */
  #beginRead(): number {
    if (this.closed) throw this.closedRead()
    // A read that waited out the lock a moment ago: another now would most likely wait as long, holding the loop.
    if (this.#lockedRead && performance.now() < this.#lockedRead.until) throw new AuditStoreUnavailable(this.#lockedRead.err, 'read')
    return wallClockMs()
  }

  /** What a failed read throws; a lock waited out starts the pause. */
  #readFailed(err: unknown, began: number): unknown {
    // A read spanning turns (slices, a page walked newest first) whose connection a stop closed between
    // two of them: node:sqlite says "statement has been finalized", but it is the store closing, as above.
    if (this.closed) return this.closedRead()
    if (this.#thread && isLockTimeout(err)) this.#lockedRead = { until: performance.now() + SERVING_READ_LOCK_BACKOFF_MS, err, began }
    return asStoreOutage(err, 'read')
  }

  protected async readHead(): Promise<ChainHead | undefined> {
    return this.#read(() => this.#head.get() as ChainHead | undefined)
  }

  async macsBeganAt(): Promise<number | undefined> {
    return this.#read(() => {
      const started = (this.#db.prepare(MACS_STARTED_SQL).get() as { seq: number | null }).seq
      return foundMacFrom(started, (this.#db.prepare(LAST_CHECKPOINT_SQL).get() as { body: string } | undefined)?.body)
    })
  }

  query(q: AuditQuery): Promise<AuditPage> {
    return this.#read(() => this.#query(q))
  }

  async #query(q: AuditQuery): Promise<AuditPage> {
    assertPageSize(q.limit)
    const where: string[] = []
    const args: SQLInputValue[] = []
    if (q.jti !== undefined) {
      // No SQL index on jti alone (see jti_index.ts): the candidates the in-memory index holds, and the rows
      // of the second the jti tells, found through audit_time_jti. Then the page is read by seq, which keeps
      // SQLite from choosing another filter's index; `jti = ?` below re-checks.
      await this.#jtiUpToDate()
      const seqs = this.#jti.candidates(q.jti)
      const second = jtiSecond(q.jti)
      if (second !== undefined) for (const r of this.#jtiInSecond.all(second, q.jti) as Array<{ seq: number }>) seqs.push(r.seq)
      if (seqs.length === 0) return { records: [] }
      where.push(`seq IN (${seqs.map(Number).join(', ')})`)
    }
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
    // `time` and `type` place a record whose body cannot be read (rowToRecord); the rest comes from the body.
    const sql = `SELECT seq, time, type, body, prev_hash, hash FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, seq DESC LIMIT ?`
    if (!filtersUnindexed(q)) return toPage(this.#db.prepare(sql).all(...args, q.limit + 1) as unknown as StoredRow[], q.limit)
    // site, type, request_id and decision=allow have no index: SQLite walks audit_time (or the index of the
    // other filter) and tests each row, so a search that matches nothing read every record in the range in
    // one go (~300 ms for 1,000,000). Newest-first time slices, one per turn, read the same rows in the same
    // order; a slice holds about SLICE_ROWS records of the walked index (all records, or e.g. the role's).
    const slice = this.#db.prepare(`SELECT seq, time, type, body, prev_hash, hash FROM audit_log WHERE ${[...where, 'time >= ?', 'time <= ?'].join(' AND ')}
      ORDER BY time DESC, seq DESC LIMIT ?`)
    const [narrowSql, narrowArgs] = narrowingIndex(q)
    const edge = this.#db.prepare(`SELECT time FROM audit_log WHERE ${narrowSql}time <= ? AND time >= ? ORDER BY time DESC LIMIT 1 OFFSET ?`)
    const boundary = (hi: number, from: number, n: number) => {
      const t = (edge.get(...narrowArgs, hi, from, n) as { time: number } | undefined)?.time
      return t === undefined ? undefined : Number(t)
    }
    const rows: StoredRow[] = []
    const top = Math.min(q.to ?? Number.MAX_SAFE_INTEGER, q.cursor !== undefined ? decodeCursor(q.cursor).time : Number.MAX_SAFE_INTEGER)
    await forEachSliceDesc(boundary, q.from ?? Number.MIN_SAFE_INTEGER, top, (lo, hi) => {
      rows.push(...slice.all(...args, lo, hi, q.limit + 1 - rows.length) as unknown as StoredRow[])
      return rows.length > q.limit
    }, this.#sliceRows)
    return toPage(rows, q.limit)
  }

  /*
   * The three overview aggregates run in slices of about SLICE_ROWS records, one per event-loop turn
   * (sqlite_slices.ts): in one go, a month of a large log held the loop for seconds and stalled every
   * token request. Each slice is its own read, not one snapshot: a record committed meanwhile is counted
   * if its time falls in a slice not read yet, as if the overview had started a few ms later, and never
   * twice (slices are disjoint in time). The three aggregates never shared a snapshot either (the writer
   * thread commits between statements); an overview of counts needs none. A read transaction held across
   * turns would also block this connection's own transactions (readRevocationState, the inline writer).
   */
  countByTime(q: CountQuery): Promise<CountRow[]> {
    return this.#read(() => this.#countByTime(q))
  }

  async #countByTime(q: CountQuery): Promise<CountRow[]> {
    assertCountQuery(q)
    // node:sqlite binds JS numbers as REAL, which would make this a float division: the width (a checked
    // integer) goes in as a literal, so the bucket start is integer arithmetic inside SQLite.
    const slice = this.#db.prepare(`SELECT (time / ${q.bucketSeconds}) * ${q.bucketSeconds} AS bucket, type, role, site, token_kind, count(*) AS count FROM audit_log
      WHERE time >= ? AND time < ? AND type IN (${COUNTED_TYPES_SQL}) GROUP BY 1, 2, 3, 4, 5`)
    return sumSlices(this.#timeBoundary, q.from, q.to + 1,
      (lo, hi) => (slice.all(lo, hi) as unknown as CountRow[]).map((r) => ({ ...r, bucket: Number(r.bucket), count: Number(r.count) })),
      (r) => JSON.stringify([r.bucket, r.type, r.role, r.site, r.token_kind]), this.#sliceRows)
  }

  countDenialReasons(q: { from: number; to: number }): Promise<ReasonRow[]> {
    return this.#read(() => this.#countDenialReasons(q))
  }

  async #countDenialReasons(q: { from: number; to: number }): Promise<ReasonRow[]> {
    assertCountQuery(q)
    // The literal lets SQLite use the partial index audit_denied (for the slice edges too).
    const slice = this.#db.prepare(`SELECT json_extract(body, '$.reason') AS reason, count(*) AS count FROM audit_log
      WHERE decision = 'deny' AND time >= ? AND time < ? AND type = 'token.denied' GROUP BY 1`)
    const boundary = this.#db.prepare(`SELECT time FROM audit_log WHERE decision = 'deny' AND time >= ? AND time < ? ORDER BY time LIMIT 1 OFFSET ?`)
    // json_extract fails the whole statement on one body that is not JSON (edited by hand, or corrupted): such a
    // slice is counted again, those bodies apart. Not the first statement: json_valid parses every body twice.
    const careful = this.#db.prepare(`SELECT CASE WHEN json_valid(body) THEN json_extract(body, '$.reason') END AS reason,
      CASE WHEN json_valid(body) THEN 0 ELSE 1 END AS unreadable, count(*) AS count FROM audit_log
      WHERE decision = 'deny' AND time >= ? AND time < ? AND type = 'token.denied' GROUP BY 1, 2`)
    const read = (lo: number, hi: number): ReasonRow[] => {
      try {
        return (slice.all(lo, hi) as unknown as ReasonRow[]).map((r) => ({ reason: r.reason, count: Number(r.count) }))
      } catch {
        return (careful.all(lo, hi) as unknown as Array<{ reason: string | null; unreadable: number; count: number }>)
          .map((r) => ({ reason: r.reason, count: Number(r.count), ...(r.unreadable ? { unreadable: true as const } : {}) }))
      }
    }
    return sumSlices(boundary, q.from, q.to + 1, read, (r) => JSON.stringify([r.reason, r.unreadable === true]), this.#sliceRows)
  }

  countLive(q: { now: number; since: number }): Promise<LiveRow[]> {
    return this.#read(() => this.#countLive(q))
  }

  async #countLive(q: { now: number; since: number }): Promise<LiveRow[]> {
    const slice = this.#db.prepare(`SELECT site, role, count(*) AS count FROM audit_log
      WHERE time >= ? AND time < ? AND type IN ('token.issued', 'token.renewed') AND exp > ? GROUP BY 1, 2`)
    const rows = await sumSlices(this.#timeBoundary, q.since, NO_END,
      (lo, hi) => (slice.all(lo, hi, q.now) as unknown as LiveRow[]).map((r) => ({ site: r.site, role: r.role, count: Number(r.count) })),
      (r) => JSON.stringify([r.site, r.role]), this.#sliceRows)
    // The single query's ORDER BY 1, 2, in SQLite's own order.
    return rows.sort((a, b) => compareSqlText(a.site, b.site) || compareSqlText(a.role, b.role))
  }

  override async prune(before: number, now: number, options: { signal?: AbortSignal } = {}): Promise<PruneResult> {
    const result = await super.prune(before, now, options)
    if (result.pruned > 0) {
      // Only keeps the jti index small, and its next pass reads it again: a store out of reach now (another
      // process's lock, the store closing) must not turn chunks that committed into a failed prune. Through
      // #read, as every read is; anything it does not call an outage (a bug) still fails the call.
      await this.#read(() => this.#readFirstLive()).catch((err: unknown) => { if (!(err instanceof TemporarilyUnavailable)) throw err })
    }
    return result
  }

  #readFirstLive(): number {
    this.#jtiFirstLive = (this.#firstSeq.get() as { seq: number | null }).seq ?? 1
    return this.#jtiFirstLive
  }

  /** The highest seq the jti index has read in, and how many entries it holds (metrics, tests). */
  jtiIndexState(): { through: number; entries: number } {
    return { through: this.#jtiThrough, entries: this.#jti.size }
  }

  /** Brings the jti index up to the head as of this call (a pass already running may have started earlier). */
  async #jtiUpToDate(): Promise<void> {
    const target = (this.#head.get() as { seq: number }).seq
    for (let pass = 0; pass < 3 && this.#jtiThrough < target; pass++) await this.#catchUpJti()
  }

  /** One shared pass at a time: reads rows added since the last (by this process or any other). */
  #catchUpJti(): Promise<void> {
    if (!this.#jtiCatchUp) {
      const run = this.#readJtiRows()
      this.#jtiCatchUp = run
      const done = () => { if (this.#jtiCatchUp === run) this.#jtiCatchUp = undefined }
      run.then(done, done)
    }
    return this.#jtiCatchUp
  }

  /**
   * Reads rows up to the current head in bounded steps, yielding to the event loop between steps. Each step
   * through the read guard (#readNow), as every read: a pass runs in the background (a commit's reply starts
   * it), and read past the guard it waited out a lock on the event loop during the pause after a locked read
   * (256 ms each time), which no other read may do (SERVING_READ_LOCK_BACKOFF_MS).
   */
  async #readJtiRows(): Promise<void> {
    const { head, first, step } = this.#readNow(() => ({
      head: (this.#head.get() as { seq: number }).seq,
      first: this.#readFirstLive(),
      step: this.#db.prepare('SELECT seq, time, jti FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?'),
    }))
    for (let n = 0; this.#jtiThrough < head && n <= head / JTI_CHUNK + 1; n++) {
      if (n > 0) await nextTurn()
      const rows = this.#readNow(() => step.all(this.#jtiThrough, head, JTI_CHUNK) as Array<{ seq: number; time: number; jti: string | null }>)
      for (const r of rows) if (needsJtiEntry(r.jti, r.time)) this.#jti.add(r.jti, r.seq, first)
      this.#jtiThrough = rows.length < JTI_CHUNK ? head : rows.at(-1)!.seq
    }
  }

  async listRevocations(options: { activeAt?: number } = {}): Promise<Revocation[]> {
    const rows = await this.#read(() => (options.activeAt === undefined
      ? this.#db.prepare('SELECT * FROM revocations ORDER BY id').all()
      : this.#db.prepare(activeRevocationsSql('?')).all(options.activeAt)) as unknown as RevocationRow[])
    return rows.map(fromRevocationRow)
  }

  async readCredential(user: string, provider: string): Promise<StoredCredential | undefined> {
    const row = await this.#read(() => this.#db.prepare('SELECT * FROM user_credentials WHERE user_name = ? AND provider = ?').get(user, provider) as unknown as CredentialRow | undefined)
    return row ? fromCredentialRow(row) : undefined
  }

  async credentialByVaultToken(sha256: string): Promise<StoredCredential | undefined> {
    const row = await this.#read(() => this.#db.prepare('SELECT * FROM user_credentials WHERE vault_token_sha256 = ?').get(sha256) as unknown as CredentialRow | undefined)
    return row ? fromCredentialRow(row) : undefined
  }

  async listCredentials(): Promise<StoredCredential[]> {
    return (await this.#read(() => this.#db.prepare('SELECT * FROM user_credentials ORDER BY user_name, provider').all() as unknown as CredentialRow[])).map(fromCredentialRow)
  }

  async countLiveCredentials(user: string, except: string): Promise<number> {
    const row = await this.#read(() => this.#db.prepare('SELECT COUNT(*) AS n FROM user_credentials WHERE user_name = ? AND provider <> ? AND revoked = 0').get(user, except) as { n: number })
    return Number(row.n)
  }

  async readConsoleSession(idSha256: string): Promise<StoredSession | undefined> {
    const row = await this.#read(() => this.#db.prepare('SELECT * FROM console_sessions WHERE id_sha256 = ?').get(idSha256) as unknown as SessionRow | undefined)
    return row ? fromSessionRow(row) : undefined
  }

  async roleGenerations(): Promise<Map<string, number>> {
    const rows = await this.#read(() => this.#db.prepare('SELECT role, gen FROM role_generations').all() as Array<{ role: string; gen: number }>)
    return new Map(rows.map((r) => [r.role, r.gen]))
  }

  async issuanceHorizon(): Promise<IssuanceHorizons> {
    return this.#read(() => readSqliteHorizons(this.#db))
  }

  async reseedHorizons(): Promise<void> {
    // On this connection, under the write lock like any writer's (the writer's own view only lags: it grows).
    // It waits for another process's lock on the event loop, as the anchor write did, but only at start
    // (services.ts), before the broker listens: nothing is held up but the start, which the schema check
    // on opening the file waits for the same way, and a lock held past the busy timeout fails the start,
    // in an operator's one line (a busy or failing database is no bug: not "internal error").
    try {
      this.#asWriter(() => {
        this.#db.exec('BEGIN IMMEDIATE')
        try {
          for (const sql of RESEED_SQL) this.#db.exec(sql)
          this.#db.exec('COMMIT')
        } catch (err) {
          throw rolledBack(this.#db, err)
        }
      })
    } catch (err) {
      if (!isStoreOutage(err)) throw err
      const said = err instanceof Error ? err.message : String(err)
      throw new OperatorError('EAUDITSTORE', `cannot fold the audit log into the issuance horizons: ${said} (another process may hold the database's write lock: an "audit prune", a "revoke", a backup); start again once it is done`, { cause: err })
    }
  }

  /**
   * A write on this connection waits for another writer's lock (the writer thread's batch, the CLI) as long
   * as a writer does: a serving store's reads give up sooner (SERVING_READ_BUSY_TIMEOUT_MS). All synchronous,
   * so no read runs meanwhile with the longer wait.
   */
  #asWriter<T>(run: () => T): T {
    if (!this.#thread) return run()
    this.#db.exec(`PRAGMA busy_timeout = ${this.#writerBusyTimeoutMs}`)
    try {
      return run()
    } finally {
      this.#db.exec(`PRAGMA busy_timeout = ${Math.min(SERVING_READ_BUSY_TIMEOUT_MS, this.#writerBusyTimeoutMs)}`)
    }
  }

  protected readRevocationState(): Promise<RevocationState> {
    return this.#read(() => {
      // One read transaction, all synchronous: a WAL snapshot, and no inline commit can run in between.
      this.#db.exec('BEGIN')
      let state: RevocationState
      try {
        const head = this.#head.get() as ChainHead | undefined
        const first = (this.#firstSeq.get() as { seq: number | null }).seq ?? 0
        const rows = (this.#db.prepare('SELECT * FROM revocations ORDER BY id').all() as unknown as RevocationRow[]).map(fromRevocationRow)
        const at = activeCheckTime()
        const active = { at, rows: (this.#db.prepare(activeRevocationsSql('?')).all(at) as unknown as RevocationRow[]).map(fromRevocationRow) }
        const gens = this.#db.prepare('SELECT role, gen FROM role_generations').all() as Array<{ role: string; gen: number }>
        state = { head, firstSeq: first, rows, active, generations: new Map(gens.map((r) => [r.role, r.gen])), horizons: readSqliteHorizons(this.#db) }
      } catch (err) {
        // Not a COMMIT in `finally`: one that failed too would replace the read's own error (rolledBack).
        throw rolledBack(this.#db, err)
      }
      this.#db.exec('COMMIT')
      return state
    })
  }

  protected readRows(seqs: readonly number[]): Promise<StoredRow[]> {
    return this.#read(() => {
      const out: StoredRow[] = []
      for (let i = 0; i < seqs.length; i += 500) {
        const chunk = seqs.slice(i, i + 500)
        out.push(...this.#db.prepare(`SELECT * FROM audit_log WHERE seq IN (${chunk.map(() => '?').join(', ')})`).all(...chunk) as unknown as StoredRow[])
      }
      return out
    })
  }

  protected readAnchor(): Promise<string | undefined> {
    return this.#read(() => (this.#db.prepare('SELECT sealed FROM audit_anchor WHERE id = 1').get() as { sealed: string } | undefined)?.sealed)
  }

  /**
   * Serving: by the writer thread, in a batch's transaction, where writes wait for another process's write
   * lock off the event loop. On this connection the write waited the writer's busy timeout on the loop, and
   * every request with it: 5 s once per check while an admin's prune, a CLI revoke or a backup held the lock
   * (test/integration/sqlite_anchor_lock_stall.test.ts). A write that fails rejects, for the check to report
   * and retry (revocation_watch.ts). Inline (the CLI): on this connection, which holds nothing else up.
   */
  protected async writeAnchor(sealed: string): Promise<void> {
    if (this.#thread) await this.#thread.submit({ kind: 'anchor', sealed })
    else this.#db.prepare(WRITE_ANCHOR_SQL).run(sealed)
  }

  protected async closeBackend(): Promise<void> {
    try {
      // A copy read as it lies must still be as it was, or what was read from it may not hold.
      assertReadAsItLay(this.#db)
    } finally {
      try { this.#db.exec('PRAGMA optimize') } catch { /* best effort: statistics only */ }
      this.#db.close()
    }
  }
}

/** SQLite's BUSY (primary code 5, extended codes in the low byte): the read waited out the busy timeout. */
function isLockTimeout(err: unknown): boolean {
  const { code, errcode } = (err ?? {}) as { code?: unknown; errcode?: unknown }
  return code === 'ERR_SQLITE_ERROR' && typeof errcode === 'number' && (errcode & 0xff) === 5
}

/** A search with a filter no index serves, and no jti (whose candidates are few): it is read in slices. */
function filtersUnindexed(q: AuditQuery): boolean {
  return q.jti === undefined && (q.site !== undefined || q.type !== undefined || q.requestId !== undefined || q.decision === 'allow')
}

/** The indexed filter SQLite walks for the search (if any), as a WHERE prefix: slice edges walk it too. */
function narrowingIndex(q: AuditQuery): [string, SQLInputValue[]] {
  if (q.caller !== undefined) return ['caller_sub = ? AND ', [q.caller]]
  if (q.issuedSub !== undefined) return ['issued_sub = ? AND ', [q.issuedSub]]
  if (q.role !== undefined) return ['role = ? AND ', [q.role]]
  if (q.decision === 'deny') return ["decision = 'deny' AND ", []]
  return ['', []]
}
