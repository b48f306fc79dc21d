import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite'
import type { AuditPage, AuditQuery } from '../audit/audit_log.ts'
import { COLUMN_NAMES, GENESIS_HASH, rowToRecord, type AuditColumns, type StoredRow } from '../audit/chain.ts'
import { OperatorError } from '../errors.ts'
import { INITIAL_GENERATION, type NewRevocation, type Revocation } from '../revocation/revocation.ts'
import {
  ChainedStore, assertPageSize, chainRow, checkpointEventBody, decodeCursor, encodeCursor, equalityFilters,
  revocationEventBody, type WriteOp,
} from './chained_store.ts'
import type { GroupCommitOptions } from './group_commit.ts'

/**
 * `full` fsyncs the WAL at every commit: a record survives power loss, which is what "no token without its
 * record" needs, and group commit pays that fsync once per batch. `normal` survives a process crash
 * (SIGKILL) but may lose the last commits on power loss or kernel panic; only for throwaway deployments.
 */
export type SqliteSynchronous = 'full' | 'normal'

export interface SqliteStoreOptions {
  file: string
  synchronous?: SqliteSynchronous
  groupCommit?: Partial<GroupCommitOptions>
  /** How long a writer waits for another process's write lock (e.g. the CLI revoking while serving). */
  busyTimeoutMs?: number
}

/** Schema versions, applied in order under PRAGMA user_version. Never edit a shipped step; append one. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE audit_log (
     seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, type TEXT NOT NULL, request_id TEXT,
     caller_iss TEXT, caller_sub TEXT, client_id TEXT, role TEXT, token_kind TEXT, issued_sub TEXT,
     jti TEXT, decision TEXT, exp INTEGER, site TEXT,
     body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
   CREATE INDEX audit_time ON audit_log(time);
   CREATE INDEX audit_caller ON audit_log(caller_sub, time);
   CREATE INDEX audit_issued_sub ON audit_log(issued_sub, time);
   CREATE INDEX audit_role ON audit_log(role, time);
   CREATE INDEX audit_jti ON audit_log(jti);
   CREATE INDEX audit_decision ON audit_log(decision, time);
   CREATE INDEX audit_site ON audit_log(site, time);
   CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
   INSERT INTO audit_head VALUES (1, 0, '${GENESIS_HASH}');
   CREATE TABLE revocations (
     id INTEGER PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, revoked_at INTEGER NOT NULL,
     until INTEGER NOT NULL, gen INTEGER, reason TEXT, revoked_by TEXT);
   CREATE INDEX revocations_until ON revocations(until);
   CREATE TABLE role_generations (role TEXT PRIMARY KEY, gen INTEGER NOT NULL);`,
]

const SCAN_CHUNK = 5000
const INSERT_SQL = `INSERT INTO audit_log (seq, ${COLUMN_NAMES.join(', ')}, body, prev_hash, hash) VALUES (${Array(COLUMN_NAMES.length + 4).fill('?').join(', ')})`

/** The embedded default: one file under data/, WAL, group commit. */
export class SqliteStore extends ChainedStore {
  readonly backend = 'sqlite' as const
  readonly #db: DatabaseSync
  readonly #insert: StatementSync
  readonly #head: StatementSync
  readonly #setHead: StatementSync

  constructor(options: SqliteStoreOptions) {
    super(options.groupCommit)
    try {
      mkdirSync(dirname(options.file), { recursive: true, mode: 0o700 })
      this.#db = new DatabaseSync(options.file)
      this.#db.exec(`PRAGMA busy_timeout = ${options.busyTimeoutMs ?? 5000}`)
      this.#db.exec('PRAGMA journal_mode = WAL')
      this.#db.exec(`PRAGMA synchronous = ${(options.synchronous ?? 'full').toUpperCase()}`)
      migrate(this.#db)
    } catch (err) {
      if (err instanceof OperatorError) throw err
      throw new OperatorError('EAUDITSTORE', `cannot open the SQLite audit store ${options.file}: ${(err as Error).message}`, { cause: err })
    }
    this.#insert = this.#db.prepare(INSERT_SQL)
    this.#head = this.#db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1')
    this.#setHead = this.#db.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1')
  }

  protected commitBatch(ops: WriteOp[]): void {
    const db = this.#db
    // IMMEDIATE takes the write lock up front, so another process cannot move the head under us.
    db.exec('BEGIN IMMEDIATE')
    try {
      const head = this.#head.get() as { seq: number; hash: string }
      let seq = head.seq
      let prev = head.hash
      const append = (body: string, cols: AuditColumns) => {
        seq++
        const row = chainRow(seq, prev, body, cols)
        this.#insert.run(seq, ...COLUMN_NAMES.map((c) => row[c] as SQLInputValue), body, prev, row.hash)
        prev = row.hash
      }
      for (const op of ops) {
        if (op.kind === 'event') append(op.body, op.cols)
        else if (op.kind === 'revoke') {
          const rev = this.#insertRevocation(op.rev)
          const { body, cols } = revocationEventBody(op.event, rev)
          append(body, cols)
          op.result = rev
        } else {
          const cut = this.#prunePrefix(op.before)
          if (cut) {
            const { body, cols } = checkpointEventBody({ ...cut, before: op.before }, op.now)
            append(body, cols)
            op.result = { pruned: cut.prunedCount, checkpointSeq: seq }
          } else op.result = { pruned: 0 }
        }
      }
      this.#setHead.run(seq, prev)
      db.exec('COMMIT')
    } catch (err) {
      if (db.isTransaction) db.exec('ROLLBACK')
      throw err
    }
  }

  #insertRevocation(r: NewRevocation): Revocation {
    let gen: number | undefined
    if (r.kind === 'role') {
      const cur = this.#db.prepare('SELECT gen FROM role_generations WHERE role = ?').get(r.value) as { gen: number } | undefined
      gen = (cur?.gen ?? INITIAL_GENERATION) + 1
      this.#db.prepare('INSERT INTO role_generations (role, gen) VALUES (?, ?) ON CONFLICT (role) DO UPDATE SET gen = excluded.gen').run(r.value, gen)
    }
    const res = this.#db.prepare('INSERT INTO revocations (kind, value, revoked_at, until, gen, reason, revoked_by) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(r.kind, r.value, r.revokedAt, r.until, gen ?? null, r.reason ?? null, r.revokedBy ?? null)
    return { ...r, id: Number(res.lastInsertRowid), ...(gen !== undefined ? { gen } : {}) }
  }

  /** Deletes the oldest records up to the first one at or after `before`; returns what the checkpoint must carry. */
  #prunePrefix(before: number) {
    const keep = this.#db.prepare('SELECT min(seq) AS seq FROM audit_log WHERE time >= ?').get(before) as { seq: number | null }
    const max = (this.#head.get() as { seq: number }).seq
    const through = keep.seq === null ? max : keep.seq - 1
    const first = this.#db.prepare('SELECT min(seq) AS seq FROM audit_log').get() as { seq: number | null }
    if (first.seq === null || through < first.seq) return null
    const last = this.#db.prepare('SELECT hash FROM audit_log WHERE seq = ?').get(through) as { hash: string } | undefined
    if (!last) throw new Error(`audit record ${through} is missing; run audit verify`)
    const res = this.#db.prepare('DELETE FROM audit_log WHERE seq <= ?').run(through)
    return { prunedThroughSeq: through, prunedLastHash: last.hash, prunedCount: Number(res.changes) }
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
    for (const [col, v] of equalityFilters(q)) { where.push(`${col} = ?`); args.push(v) }
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
    try { this.#db.exec('PRAGMA optimize') } catch { /* best effort: statistics only */ }
    this.#db.close()
  }
}

function migrate(db: DatabaseSync): void {
  // One step per transaction, re-reading the version under the write lock: two processes opening a new
  // file at once (serve and the CLI) must not both run a step.
  for (let i = 0; i <= MIGRATIONS.length; i++) {
    db.exec('BEGIN IMMEDIATE')
    try {
      const { user_version: v } = db.prepare('PRAGMA user_version').get() as { user_version: number }
      if (v > MIGRATIONS.length) {
        throw new OperatorError('EAUDITSCHEMA', `the audit database has schema version ${v}, newer than this broker knows (${MIGRATIONS.length}); upgrade the broker`)
      }
      if (v === MIGRATIONS.length) { db.exec('COMMIT'); return }
      db.exec(MIGRATIONS[v]!)
      db.exec(`PRAGMA user_version = ${v + 1}`)
      db.exec('COMMIT')
    } catch (err) {
      if (db.isTransaction) db.exec('ROLLBACK')
      throw err
    }
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
