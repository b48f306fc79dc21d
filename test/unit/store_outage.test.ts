// Which store failures are an outage (503 temporarily_unavailable, the client retries) and which are not
// (500 server_error: a bug or damage an operator must look at). Expected codes come from the references,
// not from the code under test: SQLite's result codes (https://www.sqlite.org/rescode.html), PostgreSQL's
// SQLSTATEs (Appendix A, "PostgreSQL Error Codes"), the errno names Node reports for sockets, and the
// messages the pg client library gives a connection it lost (it sets no code on them).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { AuditStoreUnavailable, TemporarilyUnavailable } from '../../src/errors.ts'
import { StoreOverloaded } from '../../src/storage/group_commit.ts'
import { asStoreOutage, isStoreOutage, StoreClosed, WriterGone } from '../../src/storage/store_outage.ts'

const sqlite = (errcode: number, message = 'sqlite says no') => Object.assign(new Error(message), { code: 'ERR_SQLITE_ERROR', errcode, errstr: message })
const sqlstate = (code: string) => Object.assign(new Error(`postgres says ${code}`), { code, severity: 'FATAL' })
const sys = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code, syscall: 'connect' })

describe('isStoreOutage', () => {
  it.each([
    ['SQLITE_BUSY', 5], ['SQLITE_NOMEM', 7], ['SQLITE_READONLY', 8], ['SQLITE_IOERR', 10],
    ['SQLITE_FULL', 13], ['SQLITE_CANTOPEN', 14], ['SQLITE_PROTOCOL', 15],
    // Extended codes carry the primary code in their low byte: SQLITE_BUSY_SNAPSHOT 517, SQLITE_IOERR_FSYNC 1034, SQLITE_IOERR_WRITE 778.
    ['SQLITE_BUSY_SNAPSHOT', 517], ['SQLITE_IOERR_FSYNC', 1034], ['SQLITE_IOERR_WRITE', 778],
  ])('SQLite %s (%i) is an outage', (_name, errcode) => {
    expect(isStoreOutage(sqlite(errcode))).toBe(true)
  })

  it.each([
    // SQLITE_LOCKED: "a conflict within the same database connection or a conflict with a different database
    // connection that uses a shared cache" (rescode.html). The broker's connections share no cache, so it is
    // the broker's own statements in each other's way; another process holding the file's lock is SQLITE_BUSY.
    ['SQLITE_LOCKED', 6], ['SQLITE_ERROR', 1], ['SQLITE_CORRUPT', 11], ['SQLITE_CONSTRAINT', 19], ['SQLITE_CONSTRAINT_TRIGGER', 1811], ['SQLITE_MISMATCH', 20], ['SQLITE_MISUSE', 21],
  ])('SQLite %s (%i) is not', (_name, errcode) => {
    expect(isStoreOutage(sqlite(errcode))).toBe(false)
  })

  it('SQLite\'s own error for one connection\'s statements in each other\'s way (SQLITE_LOCKED) is not an outage', () => {
    const db = new DatabaseSync(':memory:')
    try {
      db.exec('CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);')
      const rows = db.prepare('SELECT x FROM t').iterate()
      rows.next()
      let err: unknown
      try { db.exec('DROP TABLE t') } catch (e) { err = e }
      expect(err).toMatchObject({ code: 'ERR_SQLITE_ERROR', errcode: 6 })
      expect(isStoreOutage(err)).toBe(false)
    } finally {
      db.close()
    }
  })

  it.each([
    '08006', '08001', '08003', '57P01', '57P02', '57P03', '57P05', '53100', '53200', '53300', '40001', '40P01', '55P03', '57014', '25006',
  ])('PostgreSQL SQLSTATE %s is an outage', (code) => {
    expect(isStoreOutage(sqlstate(code))).toBe(true)
  })

  // 08P01 protocol_violation sits in class 08 but is the server refusing what the client sent (a bind with
  // the wrong number of parameters: "bind message supplies 2 parameters, but prepared statement requires 1"),
  // which the same request sends again on every retry: a bug, not a lost connection.
  it.each(['23505', '42P01', '42703', '22P02', 'XX000', 'XX001', '08P01'])('PostgreSQL SQLSTATE %s is not', (code) => {
    expect(isStoreOutage(sqlstate(code))).toBe(false)
  })

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])('socket error %s is an outage', (code) => {
    expect(isStoreOutage(sys(code))).toBe(true)
  })

  // PostgreSQL removes its Unix-domain socket file when it stops (and a Debian server reached by
  // host=/var/run/postgresql has none while it is down), so connecting there fails with ENOENT, not
  // ECONNREFUSED: the same outage as a refused TCP connection. This is the error the pg driver itself gives.
  it('a PostgreSQL socket directory with no server listening (the server stopped) is an outage', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctb-nopg-'))
    const client = new pg.Client({ host: dir, user: 'postgres', database: 'broker' })
    try {
      const err = await client.connect().then(() => undefined, (e: unknown) => e)
      expect(err).toMatchObject({ code: 'ENOENT' })
      expect(isStoreOutage(err)).toBe(true)
    } finally {
      await client.end().catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('ENOENT other than from connecting (a file the store opens is missing) is not an outage', () => {
    expect(isStoreOutage(Object.assign(new Error("ENOENT: no such file or directory, open '/var/lib/ctb/anchor'"), { code: 'ENOENT', syscall: 'open' }))).toBe(false)
  })

  it.each([
    'Connection terminated unexpectedly', 'Connection terminated', 'Connection terminated due to connection timeout',
    'timeout exceeded when trying to connect', 'Client has encountered a connection error and is not queryable', 'Query read timeout',
  ])('the pg client\'s "%s" is an outage', (message) => {
    expect(isStoreOutage(new Error(message))).toBe(true)
  })

  it('a connection refused on every address (AggregateError) is an outage; one with a bug inside is not', () => {
    expect(isStoreOutage(Object.assign(new AggregateError([sys('ECONNREFUSED'), sys('ECONNREFUSED')]), { code: 'ECONNREFUSED' }))).toBe(true)
    expect(isStoreOutage(new AggregateError([sys('ECONNREFUSED'), new TypeError('x is undefined')]))).toBe(false)
  })

  it('the writer thread gone is an outage; so is an outage wrapped as the cause of another error', () => {
    expect(isStoreOutage(new WriterGone('audit writer thread has stopped'))).toBe(true)
    // The broker stopping: a request the drain could not wait for is told to come back (docs/audit.md).
    expect(isStoreOutage(new StoreClosed())).toBe(true)
    expect(isStoreOutage(new Error('audit write failed', { cause: sqlite(13) }))).toBe(true)
  })

  it.each([
    ['a TypeError', new TypeError("Cannot read properties of undefined (reading 'seq')")],
    ['a plain Error', new Error('audit store is closed')],
    ['a RangeError', new RangeError('Invalid array length')],
    ['a string', 'ECONNREFUSED'],
    ['undefined', undefined],
  ])('%s is not an outage (a bug stays server_error)', (_what, err) => {
    expect(isStoreOutage(err)).toBe(false)
  })

  it('a cause chain that loops ends (bounded) and is not an outage', () => {
    const a = new Error('a')
    const b = new Error('b', { cause: a })
    Object.assign(a, { cause: b })
    expect(isStoreOutage(a)).toBe(false)
  })
})

describe('asStoreOutage', () => {
  it('turns an outage into a 503 temporarily_unavailable with a Retry-After, keeping the store error as its cause', () => {
    const cause = sqlite(10, 'disk I/O error')
    const out = asStoreOutage(cause)
    expect(out).toBeInstanceOf(AuditStoreUnavailable)
    expect(out).toBeInstanceOf(TemporarilyUnavailable)
    const u = out as AuditStoreUnavailable
    expect(u.status).toBe(503)
    expect(u.error).toBe('temporarily_unavailable')
    expect(u.retryAfter).toBeGreaterThanOrEqual(1)
    expect(u.cause).toBe(cause)
    // Shown to the client: names no internals (no path, no SQL, no DSN).
    expect(u.description).not.toMatch(/disk|sqlite|postgres|I\/O/i)
  })

  it('tells the client of a failed read that the broker could not read, not that it could not record', () => {
    // A GET of the admin API or the console, or a job token's credential lookup, recorded nothing and tried
    // to record nothing: "cannot record requests" tells the caller of a failure its request never met.
    const u = asStoreOutage(sqlite(5, 'database is locked'), 'read') as AuditStoreUnavailable
    expect(u.status).toBe(503)
    expect(u.description).toMatch(/\bread\b/)
    expect(u.description).not.toMatch(/record/)
    expect(u.description).toMatch(/try again/)
    expect(u.description).not.toMatch(/lock|sqlite|postgres/i)
    // A failed commit keeps its own words.
    expect((asStoreOutage(sqlite(13, 'database or disk is full')) as AuditStoreUnavailable).description).toMatch(/cannot record/)
  })

  it('leaves every other error as it is: a bug stays a bug, an overload stays an overload', () => {
    const bug = new TypeError('x is not a function')
    expect(asStoreOutage(bug)).toBe(bug)
    const busy = new StoreOverloaded(7)
    expect(asStoreOutage(busy)).toBe(busy)
  })
})
