import { AuditStoreUnavailable, TemporarilyUnavailable } from '../errors.ts'

/**
 * Telling a store outage from a bug. A write that fails because the database is out of reach right now
 * (the PostgreSQL server stopped, restarting or refusing connections, a timeout, SQLite's file locked by
 * another process, its disk full or failing, the writer thread gone) is the broker being temporarily
 * unable to serve: the client should come back later (503 `temporarily_unavailable`, RFC 6749 §4.1.2.1,
 * with Retry-After). Anything else (a TypeError, a constraint the write broke, a damaged database) is a
 * fault an operator must look at, and stays 500 `server_error`. Either way nothing was issued: the write
 * that failed was the record a token waits for (fail closed).
 */

/** The SQLite writer thread has stopped (crashed, or was killed): every write fails until the broker restarts. */
export class WriterGone extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'WriterGone'
  }
}

/**
 * The store has been closed: the broker is stopping (serve closes it once its listeners have drained) and a
 * request still running, one the drain could not wait for, asks it to record or read. The broker is going
 * away, not broken: like an outage it is refused 503 with Retry-After, and the client retries later, or
 * against another replica.
 */
export class StoreClosed extends Error {
  constructor() {
    super('audit store is closed')
    this.name = 'StoreClosed'
  }
}

/**
 * SQLite primary result codes (https://www.sqlite.org/rescode.html; an extended code keeps its primary code
 * in the low byte) that say "not now" rather than "never": BUSY 5 (another process holds the file's lock),
 * NOMEM 7, READONLY 8 (the file or its file system went read-only), IOERR 10, FULL 13, CANTOPEN 14,
 * PROTOCOL 15 (a WAL lock race). CORRUPT, CONSTRAINT, MISUSE and the like are not among them: retrying would
 * not help. Nor is LOCKED 6: without a shared cache (the broker's connections share none) it means one
 * connection's own statements in each other's way, a bug that every retry meets again.
 */
const SQLITE_OUTAGE = new Set([5, 7, 8, 10, 13, 14, 15])

/**
 * PostgreSQL SQLSTATEs (Appendix A) of a server that is unreachable, stopping, starting, out of room, or
 * that lost a race a retry wins. Class 08 (connection exception) and 53 (insufficient resources) whole,
 * but for 08P01 (protocol_violation): the server refusing a message the broker built wrong (a bind with the
 * wrong number of parameters), which every retry sends again, so a bug that must stay a 500.
 */
const SQLSTATE_OUTAGE_CLASSES = new Set(['08', '53'])
const SQLSTATE_NOT_OUTAGE = new Set(['08P01'])
const SQLSTATE_OUTAGE = new Set([
  '57P01', // admin_shutdown: the server is stopping (pg_ctl stop, a failover)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: the server is starting up or in recovery
  '57P05', // idle_session_timeout: the server ended a pooled connection the broker was just sending on
  '57014', // query_canceled: statement_timeout
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available: lock_timeout
  '25006', // read_only_sql_transaction: connected to a standby (a failover in progress)
])

/** Errno names Node gives a socket that cannot reach, or lost, its peer. */
const SOCKET_OUTAGE = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN',
])

/**
 * A PostgreSQL server reached through its Unix-domain socket (a DSN with host=/var/run/postgresql) removes
 * the socket file when it stops: connecting then fails with ENOENT, where TCP would say ECONNREFUSED. Only
 * from connect(): an ENOENT from opening a file is something missing, not a server down.
 */
function isSocketGone(code: string, syscall: unknown): boolean {
  return code === 'ENOENT' && syscall === 'connect'
}

/**
 * What the pg client library says, with no code, about a connection it lost or could not make in time
 * (pg's client.js and pg-pool). A message match is the only handle it offers; kept to these exact openings.
 */
const PG_CONNECTION_LOST = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Query read timeout)/

/** Causes followed at most: enough for a wrapped error, bounded for a cause chain that loops. */
const MAX_CAUSE_DEPTH = 5

/** Whether a failed store operation failed for an outage (see above); false for anything else, bugs included. */
export function isStoreOutage(err: unknown): boolean {
  let e: unknown = err
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && e instanceof Error; depth++) {
    if (isOutageItself(e)) return true
    e = e.cause
  }
  return false
}

function isOutageItself(e: Error): boolean {
  if (e instanceof WriterGone || e instanceof StoreClosed) return true
  // Every address refused (Node tries each of a name's addresses): an outage only if each attempt was one.
  if (e instanceof AggregateError) return e.errors.length > 0 && e.errors.every(isStoreOutage)
  const { code, errcode, syscall } = e as { code?: unknown; errcode?: unknown; syscall?: unknown }
  if (code === 'ERR_SQLITE_ERROR') return typeof errcode === 'number' && SQLITE_OUTAGE.has(errcode & 0xff)
  if (typeof code === 'string') {
    if (SOCKET_OUTAGE.has(code) || isSocketGone(code, syscall)) return true
    if (/^[0-9A-Z]{5}$/.test(code)) return SQLSTATE_OUTAGE.has(code) || (SQLSTATE_OUTAGE_CLASSES.has(code.slice(0, 2)) && !SQLSTATE_NOT_OUTAGE.has(code))
  }
  return PG_CONNECTION_LOST.test(e.message)
}

/** The error to throw for a failed store write (or read): AuditStoreUnavailable for an outage, anything else unchanged. */
export function asStoreOutage(err: unknown, failed: 'commit' | 'read' = 'commit'): unknown {
  if (err instanceof TemporarilyUnavailable) return err
  return isStoreOutage(err) ? new AuditStoreUnavailable(err, failed) : err
}
