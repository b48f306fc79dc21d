import pg from 'pg'
import type { AuditEvent, AuditPage, AuditQuery } from '../audit/audit_log.ts'
import { countReasonsOfBodies } from '../audit/unreadable_record.ts'
import { assertCountQuery, COUNTED_TYPES_SQL, type CountQuery, type CountRow, type LiveRow, type ReasonRow } from '../audit/aggregate.ts'
import { COLUMN_NAMES, GENESIS_HASH, HEAD_MISSING, type AuditColumns, type ChainHead, type StoredRow } from '../audit/chain.ts'
import { OperatorError } from '../errors.ts'
import { checkSchemaVersion, NO_POSTGRES_LOG } from './reader_checks.ts'
import { INITIAL_GENERATION, type IssuanceHorizons, type NewRevocation, type Revocation } from '../revocation/revocation.ts'
import { horizonsFromRows, HorizonTracker, raiseHorizonSql, reseedHorizonsSql, revocationUntil, seedHorizonsSql, seedMarkTableSql } from './issuance_horizon.ts'
import { revocationsToCarry } from '../revocation/revocation_consistency.ts'
import { type AbandonedWork, ChainedStore } from './chained_store.ts'
import { foundMacFrom, LAST_CHECKPOINT_SQL, MACS_STARTED_SQL, openedMacEra } from './mac_era.ts'
import { LIFT_AND_ISS_MIGRATION, REVOCATION_RECORDS_WHERE, activeCheckTime, activeRevocationsSql, fromRevocationRow, type RevocationRow } from './revocation_rows.ts'
import { PRUNE_RANGE_CHANGED, stateChanged, type PruneRange } from './prune_range.ts'
import { assertPageSize, decodeCursor, equalityFilters, toPage } from './audit_pages.ts'
import { chainRow, checkpointEventBody, eventRow, revocationEventBody } from './appended_rows.ts'
import type { RevocationState } from './chain_source.ts'
import type { WriteOp } from './write_ops.ts'
import type { GroupCommitOptions } from './group_commit.ts'
import { cuttablePool, type CuttablePool } from './pg_connections.ts'
import { asStoreOutage } from './store_outage.ts'
import { MACS_STARTED, type AuditMacKey } from '../audit/record_mac.ts'
import type { RedemptionOutcome } from './pilot_redemptions.ts'
import { applyRenewalAsync, PILOT_RENEWALS_TABLE, renewalKey, renewalSql, type AsyncRenewalTable, type RenewalRow, type RenewOp } from './pilot_renewals.ts'
import { CONSOLE_SESSIONS_LAST_SEEN, CONSOLE_SESSIONS_MIGRATION, fromSessionRow, sessionWriteSql, type SessionRow, type StoredSession } from '../console/session_store.ts'
import { CONFIRMATION_READ_COLUMNS, CREDENTIAL_CONFIRMATION_COLUMNS, CREDENTIALS_MIGRATION, confirmationRow, confirmationValues, confirmSql, fromCredentialRow, nextConfirmation, registerSql, revokeSql, type CredentialRow, type CredentialWrite, type StoredCredential } from '../credentials/credential_store.ts'

export interface PostgresStoreOptions {
  /** libpq-style URL; it may hold a password, so it is never logged or echoed. */
  dsn: string
  poolSize?: number
  groupCommit?: Partial<GroupCommitOptions>
  /** Fail fast when the server is unreachable: an issuance must not hang waiting for its audit record. */
  connectTimeoutMs?: number
  /**
   * Longest wait for the answer to one statement (pg's client-side query_timeout); 0 or absent: none. The
   * only bound that holds against a server that stopped answering without closing anything: a server-side
   * statement_timeout is enforced by the very server that no longer runs.
   */
  queryTimeoutMs?: number
  /** The bound for statements that grow with the log (migration steps; retention's, as a margin); 0 or absent: none. */
  longQueryTimeoutMs?: number
  /** Appends every record with a MAC under this key, and checks MACs in every chain check (ChainedStore). */
  auditMac?: AuditMacKey
  /**
   * For a command that only reads: the schema is checked, never created or migrated (a role with SELECT
   * only may read), and every transaction of the session is read-only, so the server refuses any write.
   */
  readOnly?: boolean
}

/**
 * Schema steps, applied by the broker itself under an advisory lock so replicas starting together do not
 * race. Tables are unprefixed: give the broker a database of its own. Never edit a shipped step; append.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE audit_log (
     seq BIGINT PRIMARY KEY, time BIGINT NOT NULL, type TEXT NOT NULL, request_id TEXT,
     caller_iss TEXT, caller_sub TEXT, client_id TEXT, role TEXT, token_kind TEXT, issued_sub TEXT,
     jti TEXT, decision TEXT, exp BIGINT, site TEXT,
     body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
   CREATE INDEX audit_time ON audit_log (time, seq);
   CREATE INDEX audit_caller ON audit_log (caller_sub, time, seq);
   CREATE INDEX audit_issued_sub ON audit_log (issued_sub, time, seq);
   CREATE INDEX audit_role ON audit_log (role, time, seq);
   CREATE INDEX audit_jti ON audit_log (jti);
   CREATE INDEX audit_decision ON audit_log (decision, time, seq);
   CREATE INDEX audit_site ON audit_log (site, time, seq);
   CREATE TABLE audit_head (id INT PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL);
   INSERT INTO audit_head VALUES (1, 0, '${GENESIS_HASH}');
   CREATE TABLE revocations (
     id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, revoked_at BIGINT NOT NULL,
     until BIGINT NOT NULL, gen INT, reason TEXT, revoked_by TEXT);
   CREATE INDEX revocations_until ON revocations (until);
   CREATE TABLE role_generations (role TEXT PRIMARY KEY, gen INT NOT NULL);`,
  // Revocation records are rare; start-up and audit verify read them all to check the revocations table.
  "CREATE INDEX IF NOT EXISTS audit_revocation_records ON audit_log (seq) WHERE type IN ('token.revoked', 'audit.checkpoint');",
  // Where the last full check of the chain ended, sealed (audit/anchor.ts): start-up resumes from it.
  'CREATE TABLE IF NOT EXISTS audit_anchor (id INT PRIMARY KEY CHECK (id = 1), sealed TEXT NOT NULL);',
  LIFT_AND_ISS_MIGRATION,
  // Slots used per pilot enrolment credential, updated in the transaction that appends the redemption's record.
  'CREATE TABLE IF NOT EXISTS pilot_redemptions (credential TEXT PRIMARY KEY, used INT NOT NULL);',
  // Users' job credentials: refresh tokens sealed with a key kept outside the database (credentials/).
  CREDENTIALS_MIGRATION,
  // Console sessions, shared by every replica; the bearer sealed under the session id (console/).
  CONSOLE_SESSIONS_MIGRATION,
  // How far what was issued reaches (issuance_horizon.ts), seeded from the log (again at each start of serve).
  `CREATE TABLE IF NOT EXISTS issuance_horizon (kind TEXT PRIMARY KEY, exp BIGINT NOT NULL, lifetime BIGINT NOT NULL);
   ${seedHorizonsSql('GREATEST')}`,
  // IAM's last confirmation of a scitoken-kind credential's user, shared by every replica.
  CREDENTIAL_CONFIRMATION_COLUMNS.map(([name, type]) => `ALTER TABLE user_credentials ADD COLUMN IF NOT EXISTS ${name} ${type};`).join('\n'),
  // Where the last reseed of the horizons stopped: each start of serve reads only what came after it.
  seedMarkTableSql('BIGINT'),
  // Each record's MAC under the audit MAC key (audit/record_mac.ts); NULL on the records written before.
  // The record that opened the MAC era is found through its own small index, not by reading the log.
  `ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS mac TEXT;
   CREATE INDEX IF NOT EXISTS audit_macs_started ON audit_log (seq) WHERE type = '${MACS_STARTED}';`,
  // Renewed pilot tokens and their successors, written in the transaction that appends the renewal's record
  // (pilot_renewals.ts): how every replica, and a restarted one, tells a retry from reuse.
  PILOT_RENEWALS_TABLE('BIGINT', false),
  // A console session's last activity, for the idle timeout (console/sessions.ts).
  `ALTER TABLE console_sessions ADD COLUMN IF NOT EXISTS ${CONSOLE_SESSIONS_LAST_SEEN[0]} ${CONSOLE_SESSIONS_LAST_SEEN[1]};`,
  // Nothing to change: the step marks a database that may hold `pilot-enrolment` revocations, which a replica
  // from before that kind would not enforce (the group's pilots renewing on it) and would take for records the
  // broker never wrote; at this version it refuses the database as newer than it knows.
  'SELECT 1',
]

// Any constant works; it only has to be the same in every replica.
const MIGRATION_LOCK = 0x6374_6231

const COLUMN_TYPES: Record<(typeof COLUMN_NAMES)[number], string> = {
  time: 'bigint', type: 'text', request_id: 'text', caller_iss: 'text', caller_sub: 'text', client_id: 'text',
  role: 'text', token_kind: 'text', issued_sub: 'text', jti: 'text', decision: 'text', exp: 'bigint', site: 'text',
}
const RAISE_HORIZON_SQL = raiseHorizonSql('GREATEST', ['$1', '$2::bigint', '$3::bigint'])
const RESEED_SQL = reseedHorizonsSql('GREATEST')
const ALL_COLUMNS = ['seq', ...COLUMN_NAMES, 'body', 'prev_hash', 'hash', 'mac'] as const
const ALL_TYPES = ['bigint', ...COLUMN_NAMES.map((c) => COLUMN_TYPES[c]), 'text', 'text', 'text', 'text']
// One statement per batch whatever its size: parallel arrays unnested into rows.
const INSERT_SQL = `INSERT INTO audit_log (${ALL_COLUMNS.join(', ')}) SELECT * FROM unnest(${ALL_TYPES.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`
const SCAN_CHUNK = 5000
/** First keepalive probe after this long idle on a pooled connection's socket. */
const KEEPALIVE_IDLE_MS = 10_000
/** The longest setTimeout Node keeps (a 32-bit count of ms): "no bound" for one statement on a bounded pool. */
const MAX_QUERY_TIMEOUT_MS = 2 ** 31 - 1
/** Rows handed to the caller between two turns of the event loop. */
const SCAN_SLICE = 500

// BIGINT columns hold epoch seconds and sequence numbers, far below 2^53: read them as numbers.
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
}

/** For several broker replicas: one chain, serialized by a row lock on the head. */
export class PostgresStore extends ChainedStore {
  readonly backend = 'postgres' as const
  readonly #pool: pg.Pool
  /** This replica's view of the issuance horizon row; other replicas raise it too, so it may be stale (low). */
  readonly #horizon = new HorizonTracker()

  /** Where the MAC era began, once a committed batch of this replica knew it (it never moves). */
  #macFrom: number | undefined
  /** Every connection of the pool, so that abandon() can cut them. */
  readonly #connections: CuttablePool
  /** Write ops in the transaction under way (abandon() reports them as not committed). */
  #writing = 0

  /** pg's per-statement query_timeout for statements that grow with the log; 0: none. */
  readonly #longQueryTimeoutMs: number

  private constructor(connections: CuttablePool, bounds: { queryTimeoutMs: number; longQueryTimeoutMs: number }, groupCommit?: Partial<GroupCommitOptions>, auditMac?: AuditMacKey) {
    super({
      groupCommit: {
        ...groupCommit,
        // A batch whose statement timed out met a server that does not answer: the records queued behind it
        // would each wait out the bound again, batch after batch, so they fail with it (503, retried).
        strandsQueue: isQueryTimeout,
        // A prune runs under the long bound. Alone in its transaction, and with a request's record waiting
        // for its batch no longer than a request's statement may take, no record waits out the long bound
        // (a frozen server mid-prune); a record that waited is refused unsent (503, retried).
        solo: (op) => op.kind === 'prune',
        queueDeadlineMs: bounds.queryTimeoutMs,
      },
      ...(auditMac ? { auditMac } : {}),
    })
    this.#pool = connections.pool
    this.#connections = connections
    this.#longQueryTimeoutMs = bounds.longQueryTimeoutMs
  }

  /**
   * A read on the pool. The credmon's job-token read, the Vault listener and a pilot renewal read the store
   * before they write: with the server stopped the read fails first, and is the same outage a failed write
   * is (AuditStoreUnavailable, 503 with Retry-After; store_outage.ts tells which failures); anything else
   * is left as it is.
   */
  #read<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    if (this.closed) return Promise.reject(this.closedRead())
    return this.#pool.query<R>(text, values).catch((err: unknown) => { throw asStoreOutage(err, 'read') })
  }

  /** Connects, creates or migrates the schema, and returns the store. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    // Connections a stop can cut (abandon): a server that stopped answering holds pg's own end forever.
    const connections = cuttablePool({
      connectionString: options.dsn,
      max: options.poolSize ?? 4,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      ...(options.queryTimeoutMs ? {
        query_timeout: options.queryTimeoutMs,
        // The server's side of the bound. A transaction whose client gave up (the bound fired and the socket
        // was closed) while the network dropped everything is never told so: its backend sits idle in the
        // transaction holding the chain-head row lock, and every replica's batches wait on it, until the
        // server's TCP keepalive gives up (about two hours by Linux defaults). The broker's transactions run
        // their statements back to back, never idle that long while their client lives.
        idle_in_transaction_session_timeout: options.queryTimeoutMs,
      } : {}),
      // TCP keepalive on every socket: an idle pooled connection to a host that vanished (powered off, a
      // black hole) is found dead by the kernel rather than by the next request. It cannot see a server whose
      // kernel still answers (processes stopped): query_timeout is the bound for that.
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
      // A reader's session is made read-only on each new connection, before the pool hands it out (a
      // failure discards it and fails the request). Not through pg's `options`: a DSN's own `options` (a
      // search_path) replaced it, and it replaced the PGOPTIONS every other broker process honours.
      ...(options.readOnly ? { verify: readOnlySession } : {}),
      types,
    })
    const { pool } = connections
    // An idle client losing its connection must not crash the process; the next query reconnects.
    pool.on('error', () => {})
    // Nor one that is checked out (the pool listens only while a client is idle): a server restart or a
    // terminated backend mid-transaction emitted 'error' with no listener, an uncaught exception that ended
    // the broker. The query in flight fails anyway, and release(err) discards the connection.
    pool.on('connect', (client) => { client.on('error', () => {}) })
    try {
      if (options.readOnly) await checkSchema(pool)
      else await migrate(pool, longBound(options))
    } catch (err) {
      await connections.end().catch(() => {})
      if (err instanceof OperatorError) throw err
      // The message of a pg error never contains the DSN; say which step failed, not where it pointed.
      throw new OperatorError('EAUDITSTORE', `cannot open the PostgreSQL audit store: ${(err as Error).message}`, { cause: err })
    }
    return new PostgresStore(connections, { queryTimeoutMs: options.queryTimeoutMs ?? 0, longQueryTimeoutMs: longBound(options) }, options.groupCommit, options.auditMac)
  }

  protected async commitBatch(ops: WriteOp[]): Promise<void> {
    this.#writing += ops.length
    try {
      await this.#commitBatch(ops)
    } finally {
      this.#writing -= ops.length
    }
  }

  async #commitBatch(ops: WriteOp[]): Promise<void> {
    let macFrom = this.#macFrom
    await inTransaction(this.#pool, async (client) => {
      // The row lock serializes every replica's batches: the chain stays one chain.
      const head = (await client.query<ChainHead>('SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE')).rows[0]
      // Gone only by hand: appending without it would restart the chain at seq 1 (or fail on a TypeError).
      if (!head) throw new Error(`${HEAD_MISSING}; run "audit verify"`)
      let seq = head.seq
      let prev = head.hash
      const rows: StoredRow[] = []
      const horizon = this.#horizon
      horizon.begin()
      const append = (body: string, cols: AuditColumns) => {
        seq++
        const row = chainRow(seq, prev, body, cols, this.auditMac)
        rows.push(row)
        prev = row.hash
        horizon.observe(cols)
      }
      // Looked up under the head lock, once per replica: another replica or the CLI may have opened the era.
      if (this.auditMac && macFrom === undefined) {
        const started = (await client.query<{ seq: number | null }>(MACS_STARTED_SQL)).rows[0]?.seq
        macFrom = openedMacEra(foundMacFrom(started, (await client.query<{ body: string }>(LAST_CHECKPOINT_SQL)).rows[0]?.body), seq + 1, this.auditMac, append)
      }
      const flush = async () => {
        if (rows.length === 0) return
        await client.query({ name: 'ctb_audit_insert', text: INSERT_SQL, values: ALL_COLUMNS.map((c) => rows.map((r) => r[c])) })
        rows.length = 0
      }
      const fresh = await insertRenewals(client, ops)
      for (const op of ops) {
        if (op.kind === 'event') { const { body, cols } = eventRow(op.json); append(body, cols) }
        else if (op.kind === 'redeem') {
          // Under the chain-head lock every replica's redemptions are serialised: the read below is current.
          const row = (await client.query<{ used: number }>('SELECT used FROM pilot_redemptions WHERE credential = $1', [op.credential])).rows[0]
          const used = row ? Number(row.used) : 0
          const outcome: RedemptionOutcome = used < op.limit ? { redeemed: true, slot: used + 1 } : { redeemed: false, used }
          if (outcome.redeemed) {
            await client.query('INSERT INTO pilot_redemptions (credential, used) VALUES ($1, 1) ON CONFLICT (credential) DO UPDATE SET used = pilot_redemptions.used + 1', [op.credential])
          }
          const { body, cols } = eventRow(outcome.redeemed ? op.json : op.denyJson)
          append(body, cols)
          op.result = outcome
        } else if (op.kind === 'renew') {
          // Under the chain-head lock, like a redemption: a renewal on another replica is committed or waits.
          const { json, result } = fresh.has(op) ? { json: op.json, result: { renewed: true } as const } : await applyRenewalAsync(op, renewalTable(client))
          const { body, cols } = eventRow(json)
          append(body, cols)
          op.result = result
        } else if (op.kind === 'credential') {
          const changed = await writeCredential(client, op.write)
          if (changed) { const { body, cols } = eventRow(op.json); append(body, cols) }
          op.result = changed
        } else if (op.kind === 'session') {
          for (const { sql, values } of sessionWriteSql(op.write, (i) => `$${i}`, 'postgres')) await client.query(sql, values)
        } else if (op.kind === 'confirm') {
          const { user, provider } = op.confirm
          const { rows: found } = await client.query<CredentialRow>(`SELECT ${CONFIRMATION_READ_COLUMNS} FROM user_credentials WHERE user_name = $1 AND provider = $2 FOR UPDATE`, [user, provider])
          const next = nextConfirmation(found[0] && confirmationRow(found[0]), op.confirm)
          if (next) await client.query(confirmSql((i) => `$${i}`), confirmationValues(user, provider, next))
          op.result = next !== undefined
        } else if (op.kind === 'revoke') {
          const rev = await insertRevocation(client, op.rev, horizon.batchTokenExp)
          const { body, cols } = revocationEventBody(op.event, rev)
          append(body, cols)
          op.result = rev
        } else if (op.kind === 'lift') {
          const { rows: lifted } = await client.query<RevocationRow>('UPDATE revocations SET lifted_at = $1, lifted_by = $2 WHERE id = $3 AND lifted_at IS NULL RETURNING *',
            [op.lift.liftedAt, op.lift.liftedBy ?? null, op.lift.id])
          if (lifted[0]) { const { body, cols } = eventRow(op.json); append(body, cols); op.result = fromRevocationRow(lifted[0]) }
        } else {
          await flush()
          const cut = await prunePrefix(client, op.range, op.renewals ? op.now : undefined, this.#longQueryTimeoutMs)
          if (cut && cut !== 'pruned meanwhile') {
            const { carried, ...detail } = cut
            const { body, cols } = checkpointEventBody({ ...detail, before: op.before, ...(macFrom !== undefined ? { macFrom } : {}) }, carried, op.now)
            append(body, cols)
            op.result = { pruned: cut.prunedCount, checkpointSeq: seq }
          } else op.result = cut === 'pruned meanwhile' ? { pruned: 0 } : PRUNE_RANGE_CHANGED
        }
      }
      await flush()
      await client.query('UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1', [seq, prev])
      for (const [kind, h] of horizon.raises()) await client.query(RAISE_HORIZON_SQL, [kind, h.exp, h.lifetime])
    })
    this.#horizon.committed()
    if (this.auditMac) this.#macFrom = macFrom
  }

  protected async *scanRows(fromSeq: number): AsyncIterable<StoredRow> {
    let next = fromSeq
    for (;;) {
      const { rows } = await this.#read<StoredRow>('SELECT * FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2', [next, SCAN_CHUNK])
      for (let i = 0; i < rows.length; i++) {
        // The caller hashes each row on the event loop (the check while serving, retention): a turn every
        // SCAN_SLICE rows keeps requests served, where a whole chunk held the loop for about 50 ms.
        if (i > 0 && i % SCAN_SLICE === 0) await new Promise<void>((r) => setImmediate(r))
        yield rows[i]!
      }
      if (rows.length < SCAN_CHUNK) return
      next = rows.at(-1)!.seq + 1
    }
  }

  protected async readHead(): Promise<ChainHead | undefined> {
    return (await this.#read<ChainHead>('SELECT seq, hash FROM audit_head WHERE id = 1')).rows[0]
  }

  async macsBeganAt(): Promise<number | undefined> {
    const started = (await this.#read<{ seq: number | null }>(MACS_STARTED_SQL)).rows[0]?.seq
    return foundMacFrom(started, (await this.#read<{ body: string }>(LAST_CHECKPOINT_SQL)).rows[0]?.body)
  }

  async query(q: AuditQuery): Promise<AuditPage> {
    assertPageSize(q.limit)
    const where: string[] = []
    const args: unknown[] = []
    const p = (v: unknown) => { args.push(v); return `$${args.length}` }
    for (const [col, v] of equalityFilters(q)) where.push(`${col} = ${p(v)}`)
    if (q.from !== undefined) where.push(`time >= ${p(q.from)}`)
    if (q.to !== undefined) where.push(`time <= ${p(q.to)}`)
    if (q.cursor !== undefined) {
      const c = decodeCursor(q.cursor)
      where.push(`(time, seq) < (${p(c.time)}, ${p(c.seq)})`)
    }
    // `time` and `type` place a record whose body cannot be read (rowToRecord); the rest comes from the body.
    const sql = `SELECT seq, time, type, body, prev_hash, hash FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, seq DESC LIMIT ${p(q.limit + 1)}`
    return toPage((await this.#read<StoredRow>(sql, args)).rows, q.limit)
  }

  async countByTime(q: CountQuery): Promise<CountRow[]> {
    assertCountQuery(q)
    const sql = `SELECT (time / $1) * $1 AS bucket, type, role, site, token_kind, count(*) AS count FROM audit_log
      WHERE time >= $2 AND time <= $3 AND type IN (${COUNTED_TYPES_SQL}) GROUP BY 1, 2, 3, 4, 5`
    const { rows } = await this.#read<Omit<CountRow, 'bucket' | 'count'> & { bucket: string; count: string }>(sql, [q.bucketSeconds, q.from, q.to])
    return rows.map((r) => ({ ...r, bucket: Number(r.bucket), count: Number(r.count) }))
  }

  async countDenialReasons(q: { from: number; to: number }): Promise<ReasonRow[]> {
    assertCountQuery(q)
    const sql = `SELECT (body::jsonb ->> 'reason') AS reason, count(*) AS count FROM audit_log
      WHERE decision = 'deny' AND time >= $1 AND time <= $2 AND type = 'token.denied' GROUP BY 1`
    try {
      const { rows } = await this.#read<{ reason: string | null; count: string }>(sql, [q.from, q.to])
      return rows.map((r) => ({ reason: r.reason, count: Number(r.count) }))
    } catch (err) {
      // One body jsonb cannot hold fails the cast and the whole statement: text that is not JSON (edited by
      // hand, or corrupted: 22P02), or JSON escaping U+0000, which JSON.parse reads and jsonb refuses (22P05).
      // The denials of the range are then read and counted here, unreadable ones apart.
      if (!isDataException(err)) throw err
    }
    const { rows } = await this.#read<{ body: string }>(`SELECT body FROM audit_log
      WHERE decision = 'deny' AND time >= $1 AND time <= $2 AND type = 'token.denied'`, [q.from, q.to])
    return countReasonsOfBodies(rows.map((r) => r.body))
  }

  async countLive(q: { now: number; since: number }): Promise<LiveRow[]> {
    const sql = `SELECT site, role, count(*) AS count FROM audit_log
      WHERE time >= $1 AND type IN ('token.issued', 'token.renewed') AND exp > $2 GROUP BY 1, 2 ORDER BY 1, 2`
    const { rows } = await this.#read<{ site: string | null; role: string | null; count: string }>(sql, [q.since, q.now])
    return rows.map((r) => ({ site: r.site, role: r.role, count: Number(r.count) }))
  }

  async listRevocations(options: { activeAt?: number } = {}): Promise<Revocation[]> {
    const { rows } = options.activeAt === undefined
      ? await this.#read<RevocationRow>('SELECT * FROM revocations ORDER BY id')
      : await this.#read<RevocationRow>(activeRevocationsSql('$1'), [options.activeAt])
    return rows.map(fromRevocationRow)
  }

  async readCredential(user: string, provider: string): Promise<StoredCredential | undefined> {
    const { rows } = await this.#read<CredentialRow>('SELECT * FROM user_credentials WHERE user_name = $1 AND provider = $2', [user, provider])
    return rows[0] ? fromCredentialRow(rows[0]) : undefined
  }

  async credentialByVaultToken(sha256: string): Promise<StoredCredential | undefined> {
    const { rows } = await this.#read<CredentialRow>('SELECT * FROM user_credentials WHERE vault_token_sha256 = $1', [sha256])
    return rows[0] ? fromCredentialRow(rows[0]) : undefined
  }

  async listCredentials(): Promise<StoredCredential[]> {
    const { rows } = await this.#read<CredentialRow>('SELECT * FROM user_credentials ORDER BY user_name, provider')
    return rows.map(fromCredentialRow)
  }

  async countLiveCredentials(user: string, except: string): Promise<number> {
    const { rows } = await this.#read<{ n: string }>('SELECT COUNT(*) AS n FROM user_credentials WHERE user_name = $1 AND provider <> $2 AND revoked = 0', [user, except])
    return Number(rows[0]!.n)
  }

  async readConsoleSession(idSha256: string): Promise<StoredSession | undefined> {
    const { rows } = await this.#read<SessionRow>('SELECT * FROM console_sessions WHERE id_sha256 = $1', [idSha256])
    return rows[0] ? fromSessionRow(rows[0]) : undefined
  }

  async roleGenerations(): Promise<Map<string, number>> {
    const { rows } = await this.#read<{ role: string; gen: number }>('SELECT role, gen FROM role_generations')
    return new Map(rows.map((r) => [r.role, r.gen]))
  }

  async reseedHorizons(): Promise<void> {
    // Under the long bound: the first start after the upgrade that added the reseed's mark, or after the log
    // was cut back, folds the whole log (about 0.5-1 s per million records), which the request's bound
    // would fail at every start of a large log.
    for (const sql of RESEED_SQL) await this.#pool.query({ text: sql, ...queryTimeout(this.#longQueryTimeoutMs) })
  }

  async issuanceHorizon(): Promise<IssuanceHorizons> {
    const { rows } = await this.#read<{ kind: string; exp: number; lifetime: number }>('SELECT kind, exp, lifetime FROM issuance_horizon')
    return horizonsFromRows(rows)
  }

  protected async readRevocationState(): Promise<RevocationState> {
    // On its own client, not #read: an outage here (a timed-out read, a lost connection) is classed as one all
    // the same, or `audit verify` and the checks while serving took it for a bug ("internal error", exit 70).
    if (this.closed) return Promise.reject(this.closedRead())
    return this.#readRevocationState().catch((err: unknown) => { throw asStoreOutage(err, 'read') })
  }

  async #readRevocationState(): Promise<RevocationState> {
    // One snapshot for the reads: a revocation committing meanwhile is either wholly in or wholly out.
    const client = await this.#pool.connect()
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      const head = (await client.query<ChainHead>('SELECT seq, hash FROM audit_head WHERE id = 1')).rows[0]
      const first = (await client.query<{ seq: number | null }>('SELECT min(seq) AS seq FROM audit_log')).rows[0]!.seq ?? 0
      const rows = (await client.query<RevocationRow>('SELECT * FROM revocations ORDER BY id')).rows.map(fromRevocationRow)
      const at = activeCheckTime()
      const active = { at, rows: (await client.query<RevocationRow>(activeRevocationsSql('$1'), [at])).rows.map(fromRevocationRow) }
      const gens = (await client.query<{ role: string; gen: number }>('SELECT role, gen FROM role_generations')).rows
      const horizons = horizonsFromRows((await client.query<{ kind: string; exp: number; lifetime: number }>('SELECT kind, exp, lifetime FROM issuance_horizon')).rows)
      await client.query('COMMIT')
      client.release()
      return { head, firstSeq: first, rows, active, generations: new Map(gens.map((r) => [r.role, r.gen])), horizons }
    } catch (err) {
      await discard(client, err)
      throw err
    }
  }

  protected async readRows(seqs: readonly number[]): Promise<StoredRow[]> {
    if (seqs.length === 0) return []
    return (await this.#read<StoredRow>('SELECT * FROM audit_log WHERE seq = ANY($1::bigint[])', [seqs])).rows
  }

  protected async readAnchor(): Promise<string | undefined> {
    return (await this.#read<{ sealed: string }>('SELECT sealed FROM audit_anchor WHERE id = 1')).rows[0]?.sealed
  }

  protected async writeAnchor(sealed: string): Promise<void> {
    await this.#pool.query('INSERT INTO audit_anchor (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed', [sealed])
  }

  /** Test and operator hook: run SQL on the store's pool (e.g. to tamper in tests). */
  async sql(text: string, values: unknown[] = []): Promise<pg.QueryResult> {
    return this.#pool.query(text, values)
  }

  protected async closeBackend(): Promise<void> {
    // Until every socket has closed: an idle connection pg ended stays open while the server does not answer.
    await this.#connections.end()
  }

  /**
   * Destroys the socket of every connection, busy or idle, and ends the pool: each query waiting on the
   * server fails at once ("Connection terminated"), so does every later one, and close() can finish. A
   * transaction cut before its COMMIT was answered has been reported to no caller as committed: its
   * requests fail (fail closed), whether or not the server, once it answers again, commits it.
   */
  abandon(): AbandonedWork {
    const unwritten = this.#writing + this.commitStats().pending
    void this.#connections.end().catch(() => {})
    return { connections: this.#connections.cut(), unwritten }
  }
}

/** `batchTokenExp`: the latest token expiry among the records this transaction appended before the revocation. */
async function insertRevocation(client: pg.PoolClient, r: NewRevocation, batchTokenExp: number): Promise<Revocation> {
  let gen: number | undefined
  if (r.kind === 'role') {
    gen = (await client.query<{ gen: number }>(
      'INSERT INTO role_generations (role, gen) VALUES ($1, $2::int + 1) ON CONFLICT (role) DO UPDATE SET gen = role_generations.gen + 1 RETURNING gen',
      [r.value, INITIAL_GENERATION])).rows[0]!.gen
  }
  // Under the chain-head lock every replica's earlier issuances have raised the row already.
  const stored = (await client.query<{ exp: number }>("SELECT exp FROM issuance_horizon WHERE kind = 'token'")).rows[0]?.exp ?? 0
  const until = revocationUntil(r, Math.max(stored, batchTokenExp))
  const { rows } = await client.query<{ id: number }>(
    'INSERT INTO revocations (kind, value, revoked_at, until, gen, reason, revoked_by, iss) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id',
    [r.kind, r.value, r.revokedAt, until, gen ?? null, r.reason ?? null, r.revokedBy ?? null, r.iss ?? null])
  return { ...r, until, id: rows[0]!.id, ...(gen !== undefined ? { gen } : {}) }
}

/**
 * Deletes records range.first..range.through, which ChainedStore.prune found the chain vouches for, as long as
 * nothing changed since (the log starts there, `through` has that hash, no seq in between is gone); else
 * 'pruned meanwhile' (another replica got there first) or null.
 */
const RENEWAL_SQL = renewalSql((i) => `$${i}`)
const INSERT_RENEWALS_SQL = `INSERT INTO pilot_renewals (second, jti, successor, renewed_at, expires, retries, superseded)
  SELECT s, j, su, r, e, 0, 0 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS t(s, j, su, r, e)
  ON CONFLICT (second, jti) DO NOTHING RETURNING second, jti`

/**
 * The rows of a batch's renewals in one statement, before its ops run: the renewals whose row went in are
 * renewed, with nothing more to ask. One statement per renewal cost a round trip each under the chain-head
 * lock (bench/pilot_renewals.ts --pg). Only the first renewal of each token goes in: a second one in the same
 * batch, and any whose token already had a row, is judged in turn by applyRenewalAsync.
 */
async function insertRenewals(client: pg.PoolClient, ops: readonly WriteOp[]): Promise<Set<RenewOp>> {
  const first = new Map<string, RenewOp>()
  for (const op of ops) if (op.kind === 'renew' && !first.has(op.replaces)) first.set(op.replaces, op)
  if (first.size === 0) return new Set()
  const list = [...first.values()]
  const keys = list.map((op) => renewalKey(op.replaces))
  const { rows } = await client.query<{ second: number; jti: string }>(INSERT_RENEWALS_SQL, [
    keys.map(([second]) => second), keys.map(([, jti]) => jti), list.map((op) => op.successor), list.map((op) => op.time), list.map((op) => op.expires),
  ])
  return new Set(rows.map((r) => first.get(r.jti)!))
}

/** The pilot_renewals table inside a batch's transaction. */
function renewalTable(client: pg.PoolClient): AsyncRenewalTable {
  return {
    insert: async (jti, successor, at, expires) => ((await client.query(RENEWAL_SQL.insert, [...renewalKey(jti), successor, at, expires])).rowCount ?? 0) === 1,
    read: async (jti) => (await client.query<RenewalRow>(RENEWAL_SQL.read, renewalKey(jti))).rows[0],
    has: async (jti) => (await client.query(RENEWAL_SQL.renewed, renewalKey(jti))).rows.length > 0,
    retry: async (jti, successor, at) => { await client.query(RENEWAL_SQL.retry, [successor, at, ...renewalKey(jti)]) },
    retire: async (jti, successor, at, expires) => { await client.query(RENEWAL_SQL.retire, [...renewalKey(jti), successor, at, expires]) },
  }
}

async function prunePrefix(client: pg.PoolClient, range: PruneRange, renewalsAt: number | undefined, longMs: number) {
  // One chunk (PRUNE_CHUNK records): short. The long bound stays as a margin for a server slowed down by
  // the deletes of the chunks before (the dead rows they leave until vacuum).
  const long = <R extends pg.QueryResultRow>(text: string, values: unknown[]) => client.query<R>({ text, values, ...queryTimeout(longMs) })
  const first = (await client.query<{ seq: string | null }>('SELECT min(seq) AS seq FROM audit_log')).rows[0]!
  // Another replica pruned since the check (replicas' timers fire together): the next run checks afresh.
  if (first.seq !== null && Number(first.seq) > range.first) return 'pruned meanwhile'
  const last = (await client.query<{ hash: string }>('SELECT hash FROM audit_log WHERE seq = $1', [range.through])).rows[0]
  // Between first and through, not up to through: the index entries of the chunks deleted before stay
  // until vacuum, and each chunk would scan them all again.
  const within = [range.first, range.through]
  const count = (await long<{ n: string }>('SELECT count(*) AS n FROM audit_log WHERE seq BETWEEN $1 AND $2', within)).rows[0]!
  if (Number(first.seq) !== range.first || last?.hash !== range.hash || Number(count.n) !== range.through - range.first + 1) return null
  const stating = await long<StoredRow>(`SELECT * FROM audit_log WHERE seq BETWEEN $1 AND $2 AND ${REVOCATION_RECORDS_WHERE} ORDER BY seq`, within)
  if (stateChanged(range, stating.rows)) return null
  const carried = revocationsToCarry(stating.rows.map((r) => JSON.parse(r.body) as AuditEvent))
  const res = await long('DELETE FROM audit_log WHERE seq BETWEEN $1 AND $2', within)
  // Retention also drops the renewal rows of pilots whose job has ended: none of their tokens is valid.
  if (renewalsAt !== undefined) await client.query(RENEWAL_SQL.prune, [renewalsAt])
  return { prunedThroughSeq: range.through, prunedLastHash: range.hash, prunedCount: res.rowCount ?? 0, carried }
}

/** SQLSTATE class 22, data exception: a value a statement could not convert, not a failing connection or server. */
function isDataException(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('22')
}

/** Makes a new connection's transactions read-only (the pool's verify step): the server refuses any write. */
function readOnlySession(client: pg.PoolClient, done: (err?: Error) => void): void {
  client.query('SET default_transaction_read_only = on').then(() => done(), (err: unknown) => done(err instanceof Error ? err : new Error(String(err))))
}

/** A reader's open: the log must be there, at this broker's schema version (schema_version.ts). */
async function checkSchema(pool: pg.Pool): Promise<void> {
  const present = await pool.query<{ present: boolean }>("SELECT to_regclass('ctb_schema_version') IS NOT NULL AS present")
  if (present.rows[0]?.present !== true) throw new OperatorError('EAUDITSTORE', NO_POSTGRES_LOG)
  const cur = (await pool.query<{ version: number }>('SELECT version FROM ctb_schema_version')).rows[0]
  checkSchemaVersion(cur?.version ?? 0, MIGRATIONS.length, 'read')
}

async function migrate(pool: pg.Pool, longMs: number): Promise<void> {
  await inTransaction(pool, async (client) => {
    // Another replica starting at the same time may hold it for as long as its migration takes.
    await client.query({ text: 'SELECT pg_advisory_xact_lock($1)', values: [MIGRATION_LOCK], ...queryTimeout(longMs) })
    await client.query('CREATE TABLE IF NOT EXISTS ctb_schema_version (version INT NOT NULL)')
    const cur = (await client.query<{ version: number }>('SELECT version FROM ctb_schema_version')).rows[0]
    const version = cur?.version ?? 0
    checkSchemaVersion(version, MIGRATIONS.length, 'write')
    // A step that builds an index or adds a column works through the whole log.
    for (let v = version; v < MIGRATIONS.length; v++) await client.query({ text: MIGRATIONS[v]!, ...queryTimeout(longMs) })
    if (!cur) await client.query('INSERT INTO ctb_schema_version VALUES ($1)', [MIGRATIONS.length])
    else await client.query('UPDATE ctb_schema_version SET version = $1', [MIGRATIONS.length])
  })
}

/**
 * BEGIN … COMMIT on one pooled client; on any error the connection is discarded (rolled back first, unless
 * it timed out). A COMMIT cut by the timeout has an unknown outcome, like one whose answer was lost: the
 * batch fails, so nothing waiting on it is handed out, and the server may yet commit it (docs/audit.md).
 */
async function inTransaction(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await fn(client)
    await client.query('COMMIT')
    client.release()
  } catch (err) {
    await discard(client, err)
    throw err
  }
}

/**
 * Takes a client that failed out of the pool for good. After a timeout the statement is still the
 * connection's, unanswered: a ROLLBACK would queue behind it and wait out a second timeout. Releasing with
 * the error ends the connection instead, and pg destroys the socket of one with a statement in flight; the
 * server rolls back what the connection had open once it sees the socket closed.
 */
async function discard(client: pg.PoolClient, err: unknown): Promise<void> {
  if (!isQueryTimeout(err)) await client.query('ROLLBACK').catch(() => {})
  client.release(err instanceof Error ? err : new Error(String(err)))
}

/** pg's client-side query_timeout firing (client.js gives it no code, only this message). */
function isQueryTimeout(err: unknown): boolean {
  return err instanceof Error && err.message === 'Query read timeout'
}

/** A per-statement query_timeout for pg; none when `ms` is 0 (the pool's own bound applies, if any). */
function queryTimeout(ms: number): { query_timeout?: number } {
  return ms > 0 ? { query_timeout: ms } : {}
}

/**
 * The long bound, never shorter than the pool's: pg reads a per-statement query_timeout of 0 as "use the
 * pool's", so "no long bound" can only be had with none on the pool either (both 0).
 */
function longBound(o: PostgresStoreOptions): number {
  const short = o.queryTimeoutMs ?? 0
  const long = o.longQueryTimeoutMs ?? 0
  return short === 0 ? long : long === 0 ? MAX_QUERY_TIMEOUT_MS : Math.max(short, long)
}

async function writeCredential(client: pg.PoolClient, w: CredentialWrite): Promise<boolean> {
  if (w.action === 'register') {
    const { sql, values } = registerSql(w, (i) => `$${i}`)
    return (await client.query(sql, values)).rowCount === 1
  }
  if (w.action === 'rotate') {
    const r = await client.query('UPDATE user_credentials SET ciphertext = $1, nonce = $2, key_id = $3, rotated_at = $4 WHERE user_name = $5 AND provider = $6 AND revoked = 0 AND nonce = $7',
      [w.sealed.ciphertext, w.sealed.nonce, w.sealed.keyId, w.rotatedAt, w.user, w.provider, w.previousNonce])
    return r.rowCount === 1
  }
  const { sql, values } = revokeSql(w, (i) => `$${i}`)
  const r = await client.query(sql, values)
  return r.rowCount === 1
}
