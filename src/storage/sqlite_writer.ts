import { closeSync, constants, existsSync, mkdirSync, openSync, statSync, type BigIntStats } from 'node:fs'
import { dirname } from 'node:path'
import { pathToFileURL } from 'node:url'
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite'
import { COLUMN_NAMES, GENESIS_HASH, HEAD_MISSING, recordHash, type AuditColumns, type StoredRow } from '../audit/chain.ts'
import { MACS_STARTED, recordMac, type AuditMacKey } from '../audit/record_mac.ts'
import type { AuditEvent, PruneResult } from '../audit/audit_log.ts'
import type { RedemptionOutcome } from './pilot_redemptions.ts'
import { applyRenewal, PILOT_RENEWALS_TABLE, renewalKey, renewalSql, type RenewalOutcome, type RenewalRow, type RenewalTable } from './pilot_renewals.ts'
import type { CredentialWrite } from '../credentials/credential_store.ts'
import { revocationsToCarry } from '../revocation/revocation_consistency.ts'
import { OperatorError } from '../errors.ts'
import { checkSchemaVersion, noSqliteLog } from './reader_checks.ts'
import { openExistingSqlite } from './sqlite_existing.ts'
import { needsJtiEntry } from './jti_index.ts'
import {
  CONFIRMATION_READ_COLUMNS, CREDENTIAL_CONFIRMATION_COLUMNS, CREDENTIALS_MIGRATION, confirmationRow, confirmationValues, confirmSql, nextConfirmation,
  registerSql, revokeSql, type CredentialRow,
} from '../credentials/credential_store.ts'
import { CONSOLE_SESSIONS_LAST_SEEN, CONSOLE_SESSIONS_MIGRATION, sessionWriteSql, type SessionWrite } from '../console/session_store.ts'
import { INITIAL_GENERATION, type IssuanceHorizons, type NewRevocation, type Revocation } from '../revocation/revocation.ts'
import { horizonsFromRows, HorizonTracker, raiseHorizonSql, revocationUntil, seedHorizonsSql, seedMarkTableSql } from './issuance_horizon.ts'
import { checkpointEventBody, eventRow, revocationEventBody } from './appended_rows.ts'
import { foundMacFrom, LAST_CHECKPOINT_SQL, MACS_STARTED_SQL, openedMacEra } from './mac_era.ts'
import { PRUNE_RANGE_CHANGED, stateChanged, type PruneRange } from './prune_range.ts'
import { fromRevocationRow, LIFT_AND_ISS_MIGRATION, REVOCATION_RECORDS_WHERE, type RevocationRow } from './revocation_rows.ts'
import type { SqliteWriteOp } from './write_ops.ts'

/**
 * `full` fsyncs the WAL at every commit: a record survives power loss, which is what "no token without its
 * record" needs, and group commit pays that fsync once per batch. `normal` survives a process crash
 * (SIGKILL) but may lose the last commits on power loss or kernel panic; only for throwaway deployments.
 */
export type SqliteSynchronous = 'full' | 'normal'

export interface SqliteOpenOptions {
  file: string
  synchronous?: SqliteSynchronous
  /** How long a writer waits for another process's write lock (e.g. the CLI revoking while serving). */
  busyTimeoutMs?: number
  /**
   * Opens the file the store's own connection made (the writer thread): neither it nor its directory is
   * created when gone (openExistingSqlite).
   */
  mustExist?: boolean
  /**
   * Opens an existing file for reading only (a command that only reads): nothing is created, set or migrated,
   * so a copy the caller may not write can be read, and a log of an older schema is refused, not migrated.
   */
  readOnly?: boolean
}

/**
 * Schema versions, applied in order under PRAGMA user_version. Never edit a shipped step; append one.
 * Every index costs the writer about 4 µs per record, so only selective filters get one: site and
 * decision=allow queries walk audit_time newest-first and filter (denials, ~5%, have a partial index).
 */
const MIGRATIONS: ReadonlyArray<string | ((db: DatabaseSync) => void)> = [
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
   CREATE INDEX audit_denied ON audit_log(time) WHERE decision = 'deny';
   CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
   INSERT INTO audit_head VALUES (1, 0, '${GENESIS_HASH}');
   CREATE TABLE revocations (
     id INTEGER PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, revoked_at INTEGER NOT NULL,
     until INTEGER NOT NULL, gen INTEGER, reason TEXT, revoked_by TEXT);
   CREATE INDEX revocations_until ON revocations(until);
   CREATE TABLE role_generations (role TEXT PRIMARY KEY, gen INTEGER NOT NULL);`,
  // jti is random: its index cost one WAL page per record, half the writer's work. Lookups by jti use an
  // in-memory index built from the log instead (jti_index.ts), and since step 9 the (time, jti) index.
  'DROP INDEX IF EXISTS audit_jti;',
  // Revocation records are rare; start-up and audit verify read them all to check the revocations table.
  "CREATE INDEX IF NOT EXISTS audit_revocation_records ON audit_log(seq) WHERE type IN ('token.revoked', 'audit.checkpoint');",
  // Where the last full check of the chain ended, sealed (audit/anchor.ts): start-up resumes from it.
  'CREATE TABLE IF NOT EXISTS audit_anchor (id INTEGER PRIMARY KEY CHECK (id = 1), sealed TEXT NOT NULL);',
  // Lifted entries stay (ids are never reused: SQLite would hand out a deleted highest id again).
  LIFT_AND_ISS_MIGRATION,
  // Slots used per pilot enrolment credential, updated in the transaction that appends the redemption's record.
  'CREATE TABLE IF NOT EXISTS pilot_redemptions (credential TEXT PRIMARY KEY, used INTEGER NOT NULL);',
  // Users' job credentials: refresh tokens sealed with a key kept outside the database (credentials/).
  CREDENTIALS_MIGRATION,
  // Console sessions, shared by every process on this file; the bearer sealed under the session id (console/).
  CONSOLE_SESSIONS_MIGRATION,
  // A lookup by jti reads the second the jti tells (lib/jti.ts): through this index it reads only the rows
  // of that second with that jti, not every row of the second (at 15,000 records a second, a 5-50 ms stall
  // per lookup). Its entries go in at the index's end, as the time index's do.
  'CREATE INDEX IF NOT EXISTS audit_time_jti ON audit_log(time, jti) WHERE jti IS NOT NULL;',
  // How far what was issued reaches (issuance_horizon.ts), seeded from the log (again at each start of serve).
  `CREATE TABLE IF NOT EXISTS issuance_horizon (kind TEXT PRIMARY KEY, exp INTEGER NOT NULL, lifetime INTEGER NOT NULL);
   ${seedHorizonsSql('max')}`,
  // IAM's last confirmation of a scitoken-kind credential's user, shared by every process on the file.
  // SQLite has no ADD COLUMN IF NOT EXISTS: the step adds what is missing.
  (db) => {
    const have = new Set((db.prepare('PRAGMA table_info(user_credentials)').all() as Array<{ name: string }>).map((c) => c.name))
    for (const [name, type] of CREDENTIAL_CONFIRMATION_COLUMNS) if (!have.has(name)) db.exec(`ALTER TABLE user_credentials ADD COLUMN ${name} ${type}`)
  },
  // Where the last reseed of the horizons stopped: each start of serve reads only what came after it.
  seedMarkTableSql('INTEGER'),
  // Each record's MAC under the audit MAC key (audit/record_mac.ts); NULL on the records written before.
  // The record that opened the MAC era is found through its own small index, not by reading the log.
  // SQLite has no ADD COLUMN IF NOT EXISTS: the step adds it when missing (a file set back a version by hand).
  (db) => {
    const have = (db.prepare('PRAGMA table_info(audit_log)').all() as Array<{ name: string }>).some((c) => c.name === 'mac')
    if (!have) db.exec('ALTER TABLE audit_log ADD COLUMN mac TEXT')
    db.exec(`CREATE INDEX IF NOT EXISTS audit_macs_started ON audit_log(seq) WHERE type = '${MACS_STARTED}'`)
  },
  // Renewed pilot tokens and their successors, written in the transaction that appends the renewal's record
  // (pilot_renewals.ts): how every process on the file, and a restarted one, tells a retry from reuse.
  PILOT_RENEWALS_TABLE('INTEGER', true),
  // A console session's last activity, for the idle timeout (console/sessions.ts). SQLite has no ADD COLUMN
  // IF NOT EXISTS: the step adds it when missing.
  (db) => {
    const [name] = CONSOLE_SESSIONS_LAST_SEEN
    const have = (db.prepare('PRAGMA table_info(console_sessions)').all() as Array<{ name: string }>).some((c) => c.name === name)
    if (!have) db.exec(`ALTER TABLE console_sessions ADD COLUMN ${name} INTEGER`)
  },
  // Nothing to change: the step marks a database that may hold `pilot-enrolment` revocations. A broker from
  // before that kind would not enforce such a row (the group's pilots renewing on it) and would take its record
  // for one the broker never wrote; at this version it refuses the database as newer than it knows.
  () => {},
]

/**
 * SQLite's own page cache per connection, in KiB. It was 64 MiB, chosen while the random `jti` had an
 * index; each connection's cache filled as the log grew, so a busy broker's resident memory grew by up to
 * 128 MiB (two connections) with the log (docs/performance.md). bench/audit.ts with 300,000 records
 * (500 callers, 10,000 issued subjects, 20 roles) on a quiet 2-core machine, 64 MiB against 8 MiB:
 * record() 13.3k/15.7k (concurrency 16), 17.2k/22.9k (256), 26.8k/24.4k (1024) records/s, fill
 * 25.9k/24.0k records/s, every GET /v1/audit query within 1 ms of the other (summary 33/38 ms p50).
 * Then 8 MiB against 2 MiB, the same way: record() 18.1k/17.8k (16), 23.0k/26.0k (256), 30.5k/25.2k
 * (1024), fill 33.1k/33.1k, every query within 0.2 ms of the other (summary 36.1/36.3 ms p50); broker
 * peak RSS after 45 s of HTTPS POST /token load 201-207 MB with 8 MiB, 189-190 with 2 MiB.
 */
export const SQLITE_CACHE_KIB = 2048

/** WAL length (pages) at which a commit also checkpoints; the writer thread turns this off once its checkpointer thread runs (sqlite_checkpointer.ts). */
export const AUTOCHECKPOINT_PAGES = 10_000

/** Opens a connection with the store's pragmas and brings the schema up to date. */
export function openSqliteDb(options: SqliteOpenOptions): DatabaseSync {
  try {
    if (options.readOnly) return openForReading(options)
    let db: DatabaseSync
    if (options.mustExist) db = openExistingSqlite(options.file)
    else {
      mkdirSync(dirname(options.file), { recursive: true, mode: 0o700 })
      // Created owner-only before SQLite opens it: SQLite would use the umask (0644 under 022) and gives the
      // -wal and -shm files the database's mode, and the file holds sealed refresh tokens and console sessions.
      // An existing file keeps the mode its operator gave it.
      try {
        closeSync(openSync(options.file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      db = new DatabaseSync(options.file)
    }
    db.exec(`PRAGMA busy_timeout = ${options.busyTimeoutMs ?? 5000}`)
    db.exec('PRAGMA journal_mode = WAL')
    db.exec(`PRAGMA synchronous = ${(options.synchronous ?? 'full').toUpperCase()}`)
    // Checkpointing every 10,000 WAL pages (~40 MiB) instead of 1,000 lets a page dirtied by many batches
    // be copied back once (600k-record fill 5.9k → 12k records/s, bench/audit.ts). The page cache is
    // small (SQLITE_CACHE_KIB): the file's pages stay in the kernel's page cache anyway.
    db.exec(`PRAGMA cache_size = -${SQLITE_CACHE_KIB}`)
    db.exec(`PRAGMA wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`)
    migrate(db)
    return db
  } catch (err) {
    if (err instanceof OperatorError) throw err
    throw new OperatorError('EAUDITSTORE', `cannot open the SQLite audit store ${options.file}: ${(err as Error).message}`, { cause: err })
  }
}

function openForReading(options: SqliteOpenOptions): DatabaseSync {
  if (!existsSync(options.file)) throw new OperatorError('EAUDITSTORE', noSqliteLog(options.file))
  try {
    return readingConnection(options.file, options)
  } catch (err) {
    // A WAL file is read through its -shm index, which SQLite creates beside it even to read. A copy in a
    // directory the reader may not write, with neither file beside it, cannot have a writer at work (a writer
    // keeps the -shm while it has the file open): it is read as it lies. With a -wal there (records not yet
    // checkpointed) reading it so would skip them, so that stays refused.
    const refused = (err as { errcode?: unknown }).errcode
    if (typeof refused !== 'number' || (refused & 0xff) !== SQLITE_READONLY) throw err
    if (existsSync(`${options.file}-wal`) || existsSync(`${options.file}-shm`)) throw err
    const lying = pathToFileURL(options.file)
    lying.searchParams.set('immutable', '1')
    const before = statSync(options.file, { bigint: true })
    const db = readingConnection(lying, options)
    readAsItLies.set(db, { file: options.file, before })
    return db
  }
}

/**
 * The connections opened read as the file lies (SQLite's immutable mode: no lock, no look at a -wal), with the
 * file as it was then. Nothing stops whoever may write the directory (the broker's own user starting serve)
 * from changing the file meanwhile, and SQLite then gives wrong answers or SQLITE_CORRUPT.
 */
const readAsItLies = new WeakMap<DatabaseSync, { file: string; before: BigIntStats }>()

/**
 * For a connection read as the file lies: throws, in one line, when the file is no longer as it was when
 * opened, since what was read from it may then not hold. Call once done reading, before closing it.
 */
export function assertReadAsItLay(db: DatabaseSync): void {
  const opened = readAsItLies.get(db)
  if (!opened) return
  let now: BigIntStats | undefined
  try { now = statSync(opened.file, { bigint: true }) } catch { now = undefined }
  const { before } = opened
  if (now && now.ino === before.ino && now.size === before.size && now.mtimeNs === before.mtimeNs) return
  throw new OperatorError('EAUDITSTORE', `the audit log ${opened.file} changed while it was read as it lies (no -wal beside it, in a directory this user may not write): a writer was at work on it, so what was read may not hold; read it again, or a copy`)
}

/** SQLite's primary result code for a write it may not make (extended codes keep it in the low byte). */
const SQLITE_READONLY = 8

function readingConnection(path: string | URL, options: SqliteOpenOptions): DatabaseSync {
  const db = new DatabaseSync(path, { readOnly: true })
  try {
    // Waits out a writer's lock like any reader; the cache as small as a writer's. Both are this connection's own.
    db.exec(`PRAGMA busy_timeout = ${options.busyTimeoutMs ?? 5000}`)
    db.exec(`PRAGMA cache_size = -${SQLITE_CACHE_KIB}`)
    const { user_version: v } = db.prepare('PRAGMA user_version').get() as { user_version: number }
    checkSchemaVersion(v, MIGRATIONS.length, 'read')
    return db
  } catch (err) {
    db.close()
    throw err
  }
}

/**
 * Rolls back the transaction `err` failed, and returns `err` to throw. A ROLLBACK that fails as well (the
 * disk that failed the COMMIT failing again) must not replace it: store_outage.ts tells an outage by the
 * first failure's code (SQLITE_FULL, IOERR: 503, retried), and the ROLLBACK's, another code, would make it
 * a 500. The rollback's failure goes into the message, for the log; the transaction it left open is ended
 * before the next one begins (SqliteChainWriter.commit).
 */
export function rolledBack(db: DatabaseSync, err: unknown): unknown {
  if (!db.isTransaction) return err
  try {
    db.exec('ROLLBACK')
  } catch (rollbackErr) {
    if (err instanceof Error) err.message += ` (and the rollback failed: ${rollbackErr instanceof Error ? rollbackErr.message : String(rollbackErr)})`
  }
  return err
}

function migrate(db: DatabaseSync): void {
  // One step per transaction, re-reading the version under the write lock: two processes opening a new
  // file at once (serve and the CLI) must not both run a step.
  for (let i = 0; i <= MIGRATIONS.length; i++) {
    db.exec('BEGIN IMMEDIATE')
    try {
      const { user_version: v } = db.prepare('PRAGMA user_version').get() as { user_version: number }
      checkSchemaVersion(v, MIGRATIONS.length, 'write')
      if (v === MIGRATIONS.length) { db.exec('COMMIT'); return }
      const step = MIGRATIONS[v]!
      if (typeof step === 'string') db.exec(step)
      else step(db)
      db.exec(`PRAGMA user_version = ${v + 1}`)
      db.exec('COMMIT')
    } catch (err) {
      throw rolledBack(db, err)
    }
  }
}

const RAISE_HORIZON_SQL = raiseHorizonSql('max', ['?', '?', '?'])

const RENEWAL_SQL = renewalSql(() => '?')

/** Replaces the sealed anchor (one row). */
export const WRITE_ANCHOR_SQL = 'INSERT INTO audit_anchor (id, sealed) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed'

const INSERT_SQL = `INSERT INTO audit_log (seq, ${COLUMN_NAMES.join(', ')}, body, prev_hash, hash, mac) VALUES (${Array(COLUMN_NAMES.length + 5).fill('?').join(', ')})`

/** What a committed op yields: the stored revocation, the prune outcome, or nothing for a plain event. */
export type OpResult = Revocation | PruneResult | typeof PRUNE_RANGE_CHANGED | RedemptionOutcome | RenewalOutcome | boolean | null

/**
 * The rows one transaction appended: seqs `firstSeq`, `firstSeq + 1`, … with the jti each needs in the
 * in-memory index (null: none, or found by its time; jti_index.ts).
 */
export interface AppendedRows {
  firstSeq: number
  jtis: Array<string | null>
  /** Set by the writer thread: when the commit ended (wallClockMs), which its reply reaches the loop only after. */
  committedAt?: number
}

/** A high-resolution time that threads can compare (each thread's performance.now() counts from its own origin). */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now()
}

export interface BatchOutcome { results: OpResult[]; appended: AppendedRows }

/**
 * The write side of the SQLite store: extends the chain from the head under BEGIN IMMEDIATE (which also
 * excludes other processes), all ops of a batch in one transaction. Runs in the writer thread by default
 * (sqlite_writer_thread.ts), or inline.
 */
export class SqliteChainWriter {
  readonly #db: DatabaseSync
  readonly #insert: StatementSync
  readonly #head: StatementSync
  readonly #setHead: StatementSync
  /** Statements of the rarer ops, prepared on first use: preparing one cost more than running it. */
  readonly #statements = new Map<string, StatementSync>()

  readonly #horizon: HorizonTracker
  readonly #mac: AuditMacKey | undefined
  /** Where the MAC era began, once a committed transaction of this writer knew it (it never moves). */
  #macFrom: number | undefined

  /** With `mac`, every record appended carries its MAC (record_mac.ts), computed here where its hash is. */
  constructor(db: DatabaseSync, mac?: AuditMacKey) {
    this.#db = db
    this.#mac = mac
    this.#insert = db.prepare(INSERT_SQL)
    this.#head = db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1')
    this.#setHead = db.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1')
    this.#horizon = new HorizonTracker(readSqliteHorizons(db))
  }

  commit(ops: readonly SqliteWriteOp[]): BatchOutcome {
    const db = this.#db
    // Left open by a ROLLBACK that failed (rolledBack): every later BEGIN would fail on it, a 500 for good.
    // Ended now; should that fail again, its own error (the disk's) is this batch's failure.
    if (db.isTransaction) db.exec('ROLLBACK')
    db.exec('BEGIN IMMEDIATE')
    this.#horizon.begin()
    try {
      const head = this.#head.get() as { seq: number; hash: string } | undefined
      // Gone only by hand: appending without it would restart the chain at seq 1 (or fail on a TypeError).
      if (!head) throw new Error(`${HEAD_MISSING}; run "audit verify"`)
      let seq = head.seq
      let prev = head.hash
      const jtis: Array<string | null> = []
      const mac = this.#mac
      const append = (body: string, cols: AuditColumns) => {
        seq++
        const hash = recordHash(seq, prev, body)
        // About 1 µs a record, on this thread because the hash (over seq and the previous hash) is made here.
        this.#insert.run(seq, ...COLUMN_NAMES.map((c) => cols[c] as SQLInputValue), body, prev, hash, mac ? recordMac(mac, hash) : null)
        this.#horizon.observe(cols)
        prev = hash
        jtis.push(needsJtiEntry(cols.jti, cols.time) ? cols.jti : null)
      }
      // Looked up under the write lock, once per writer: another process (the CLI) may have opened the era.
      let macFrom = this.#macFrom
      // Not for a batch that only writes the anchor: writing it never appended a record before it moved here.
      if (mac && macFrom === undefined && ops.some((op) => op.kind !== 'anchor')) {
        const found = foundMacFrom((this.#stmt(MACS_STARTED_SQL).get() as { seq: number | null }).seq, (this.#stmt(LAST_CHECKPOINT_SQL).get() as { body: string } | undefined)?.body)
        macFrom = openedMacEra(found, seq + 1, mac, append)
      }
      const results: OpResult[] = []
      for (const op of ops) {
        if (op.kind === 'event') { const { body, cols } = eventRow(op.json); append(body, cols); results.push(null) }
        else if (op.kind === 'redeem') {
          const row = this.#stmt('SELECT used FROM pilot_redemptions WHERE credential = ?').get(op.credential) as { used: number } | undefined
          const used = row?.used ?? 0
          const outcome: RedemptionOutcome = used < op.limit ? { redeemed: true, slot: used + 1 } : { redeemed: false, used }
          if (outcome.redeemed) {
            this.#stmt('INSERT INTO pilot_redemptions (credential, used) VALUES (?, 1) ON CONFLICT (credential) DO UPDATE SET used = used + 1').run(op.credential)
          }
          const { body, cols } = eventRow(outcome.redeemed ? op.json : op.denyJson)
          append(body, cols)
          results.push(outcome)
        } else if (op.kind === 'renew') {
          const { json, result } = applyRenewal(op, this.#renewals)
          const { body, cols } = eventRow(json)
          append(body, cols)
          results.push(result)
        } else if (op.kind === 'credential') {
          const changed = this.#writeCredential(op.write)
          if (changed) { const { body, cols } = eventRow(op.json); append(body, cols) }
          results.push(changed)
        } else if (op.kind === 'session') {
          this.#writeSession(op.write)
          results.push(null)
        } else if (op.kind === 'anchor') {
          this.#stmt(WRITE_ANCHOR_SQL).run(op.sealed)
          results.push(null)
        } else if (op.kind === 'confirm') {
          const { user, provider } = op.confirm
          const row = this.#stmt(`SELECT ${CONFIRMATION_READ_COLUMNS} FROM user_credentials WHERE user_name = ? AND provider = ?`).get(user, provider) as CredentialRow | undefined
          const next = nextConfirmation(row && confirmationRow(row), op.confirm)
          if (next) this.#stmt(confirmSql(() => '?')).run(...confirmationValues(user, provider, next))
          results.push(next !== undefined)
        } else if (op.kind === 'revoke') {
          const rev = this.#insertRevocation(op.rev)
          const { body, cols } = revocationEventBody(op.event, rev)
          append(body, cols)
          results.push(rev)
        } else if (op.kind === 'lift') {
          const row = this.#stmt('UPDATE revocations SET lifted_at = ?, lifted_by = ? WHERE id = ? AND lifted_at IS NULL RETURNING *')
            .get(op.lift.liftedAt, op.lift.liftedBy ?? null, op.lift.id) as RevocationRow | undefined
          if (row) { const { body, cols } = eventRow(op.json); append(body, cols) }
          results.push(row ? fromRevocationRow(row) : null)
        } else {
          const cut = this.#prunePrefix(op.range, op.renewals ? op.now : undefined)
          if (cut && cut !== 'pruned meanwhile') {
            const { carried, ...detail } = cut
            const { body, cols } = checkpointEventBody({ ...detail, before: op.before, ...(macFrom !== undefined ? { macFrom } : {}) }, carried, op.now)
            append(body, cols)
            results.push({ pruned: cut.prunedCount, checkpointSeq: seq })
          } else results.push(cut === 'pruned meanwhile' ? { pruned: 0 } : PRUNE_RANGE_CHANGED)
        }
      }
      this.#setHead.run(seq, prev)
      for (const [kind, h] of this.#horizon.raises()) this.#stmt(RAISE_HORIZON_SQL).run(kind, h.exp, h.lifetime)
      db.exec('COMMIT')
      this.#horizon.committed()
      if (mac) this.#macFrom = macFrom
      return { results, appended: { firstSeq: head.seq + 1, jtis } }
    } catch (err) {
      throw rolledBack(db, err)
    }
  }

  /** The pilot_renewals table through this connection's statements (prepared on first use). */
  readonly #renewals: RenewalTable = {
    insert: (jti, successor, at, expires) => Number(this.#stmt(RENEWAL_SQL.insert).run(...renewalKey(jti), successor, at, expires).changes) === 1,
    read: (jti) => this.#stmt(RENEWAL_SQL.read).get(...renewalKey(jti)) as RenewalRow | undefined,
    has: (jti) => this.#stmt(RENEWAL_SQL.renewed).get(...renewalKey(jti)) !== undefined,
    retry: (jti, successor, at) => { this.#stmt(RENEWAL_SQL.retry).run(successor, at, ...renewalKey(jti)) },
    retire: (jti, successor, at, expires) => { this.#stmt(RENEWAL_SQL.retire).run(...renewalKey(jti), successor, at, expires) },
  }

  #stmt(sql: string): StatementSync {
    let st = this.#statements.get(sql)
    if (!st) { st = this.#db.prepare(sql); this.#statements.set(sql, st) }
    return st
  }

  #writeCredential(w: CredentialWrite): boolean {
    if (w.action === 'register') {
      const { sql, values } = registerSql(w, () => '?')
      return Number(this.#stmt(sql).run(...values).changes) === 1
    }
    if (w.action === 'rotate') {
      return Number(this.#stmt('UPDATE user_credentials SET ciphertext = ?, nonce = ?, key_id = ?, rotated_at = ? WHERE user_name = ? AND provider = ? AND revoked = 0 AND nonce = ?')
        .run(w.sealed.ciphertext, w.sealed.nonce, w.sealed.keyId, w.rotatedAt, w.user, w.provider, w.previousNonce).changes) === 1
    }
    const { sql, values } = revokeSql(w, () => '?')
    return Number(this.#stmt(sql).run(...values).changes) === 1
  }

  #writeSession(w: SessionWrite): void {
    for (const { sql, values } of sessionWriteSql(w, () => '?', 'sqlite')) this.#stmt(sql).run(...values)
  }

  #insertRevocation(r: NewRevocation): Revocation {
    let gen: number | undefined
    if (r.kind === 'role') {
      const cur = this.#stmt('SELECT gen FROM role_generations WHERE role = ?').get(r.value) as { gen: number } | undefined
      gen = (cur?.gen ?? INITIAL_GENERATION) + 1
      this.#stmt('INSERT INTO role_generations (role, gen) VALUES (?, ?) ON CONFLICT (role) DO UPDATE SET gen = excluded.gen').run(r.value, gen)
    }
    // The row as committed so far and this batch's own earlier records: every issuance before this revocation.
    const stored = (this.#stmt("SELECT exp FROM issuance_horizon WHERE kind = 'token'").get() as { exp: number } | undefined)?.exp ?? 0
    const until = revocationUntil(r, Math.max(stored, this.#horizon.batchTokenExp))
    const res = this.#stmt('INSERT INTO revocations (kind, value, revoked_at, until, gen, reason, revoked_by, iss) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(r.kind, r.value, r.revokedAt, until, gen ?? null, r.reason ?? null, r.revokedBy ?? null, r.iss ?? null)
    return { ...r, until, id: Number(res.lastInsertRowid), ...(gen !== undefined ? { gen } : {}) }
  }

  /**
   * Deletes records range.first..range.through, which ChainedStore.prune found the chain vouches for, as
   * long as nothing changed since: the log still starts there, `through` still has that hash, and every seq
   * in between is still there. Returns what the checkpoint must carry; 'pruned meanwhile' or null (nothing deleted) when not.
   */
  #prunePrefix(range: PruneRange, renewalsAt: number | undefined) {
    const first = this.#stmt('SELECT min(seq) AS seq FROM audit_log').get() as { seq: number | null }
    // Another process pruned since the check (replicas' timers fire together): the next run checks afresh.
    if (first.seq !== null && first.seq > range.first) return 'pruned meanwhile'
    const last = this.#stmt('SELECT hash FROM audit_log WHERE seq = ?').get(range.through) as { hash: string } | undefined
    const count = this.#stmt('SELECT count(*) AS n FROM audit_log WHERE seq BETWEEN ? AND ?').get(range.first, range.through) as { n: number }
    if (first.seq !== range.first || last?.hash !== range.hash || Number(count.n) !== range.through - range.first + 1) return null
    const stating = this.#stmt(`SELECT * FROM audit_log WHERE seq BETWEEN ? AND ? AND ${REVOCATION_RECORDS_WHERE} ORDER BY seq`).all(range.first, range.through) as unknown as StoredRow[]
    if (stateChanged(range, stating)) return null
    const carried = revocationsToCarry(stating.map((r) => JSON.parse(r.body) as AuditEvent))
    const res = this.#stmt('DELETE FROM audit_log WHERE seq BETWEEN ? AND ?').run(range.first, range.through)
    // Retention also drops the renewal rows of pilots whose job has ended: none of their tokens is valid.
    if (renewalsAt !== undefined) this.#stmt(RENEWAL_SQL.prune).run(renewalsAt)
    return { prunedThroughSeq: range.through, prunedLastHash: range.hash, prunedCount: Number(res.changes), carried }
  }
}

/** The issuance horizons (schema step 10 creates and seeds their rows). */
export function readSqliteHorizons(db: DatabaseSync): IssuanceHorizons {
  return horizonsFromRows(db.prepare('SELECT kind, exp, lifetime FROM issuance_horizon').all() as Array<{ kind: string; exp: number; lifetime: number }>)
}
