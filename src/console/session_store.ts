/**
 * Console sessions as the broker store keeps them (table `console_sessions`, in the audit database, so
 * that every replica and every restart sees the same sessions). A row holds nothing that signs anyone in:
 * the session id is stored only as its SHA-256, and the bearer only sealed under a key derived from the id
 * (session_seal.ts). These rows are not audit records and never join the hash chain.
 */
export interface StoredSession {
  /** SHA-256 (base64url) of the cookie's session id. */
  idSha256: string
  /** Who signed in, for whoever reads the table (pages show the principal the bearer re-checks to); bound into the sealed bearer. */
  principal: string
  createdAt: number
  /**
   * The last request that counted as activity (sessions.ts writes it at most once a minute): the idle
   * timeout runs from it. Not bound into the sealed bearer: moving it only shortens or lengthens the idle
   * window, never past expiresAt, which is bound.
   */
  lastSeenAt: number
  expiresAt: number
  /** The bearer, sealed (session_seal.ts). */
  sealed: string
}

/** One change to the sessions table, written on the store's write path (for SQLite, its writer thread). */
export type SessionWrite =
  /**
   * Adds the session; in the same transaction removes up to `sweep` expired rows and, beyond `max` rows,
   * the oldest (by sign-in time), so the table stays bounded whatever happens.
   */
  | { action: 'create'; session: StoredSession; now: number; max: number; sweep: number }
  /** Removes the session (sign-out, expiry, a refused bearer, a row that no longer opens). */
  | { action: 'delete'; idSha256: string }
  /** Records activity on the session at `at`; a row already deleted stays deleted. */
  | { action: 'touch'; idSha256: string; at: number }

/** The console's side of the broker store (SQLite, PostgreSQL, memory). Knows nothing of HTTP. */
export interface ConsoleSessionStore {
  readConsoleSession(idSha256: string): Promise<StoredSession | undefined>
  writeConsoleSession(write: SessionWrite): Promise<void>
}

/** A `console_sessions` row as either SQL backend returns it. */
export interface SessionRow {
  id_sha256: string
  principal: string
  created_at: number | string
  /** NULL on the rows of a broker from before the idle timeout: they count from their sign-in. */
  last_seen_at: number | string | null
  expires_at: number | string
  sealed: string
}

export function fromSessionRow(r: SessionRow): StoredSession {
  return { idSha256: r.id_sha256, principal: r.principal, createdAt: Number(r.created_at), lastSeenAt: Number(r.last_seen_at ?? r.created_at), expiresAt: Number(r.expires_at), sealed: r.sealed }
}

/** Schema step shared by both SQL backends. The expiry index serves the sweep, the creation index the cap. */
export const CONSOLE_SESSIONS_MIGRATION = `CREATE TABLE IF NOT EXISTS console_sessions (
     id_sha256 TEXT PRIMARY KEY, principal TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, sealed TEXT NOT NULL);
   CREATE INDEX IF NOT EXISTS console_sessions_expires ON console_sessions (expires_at);
   CREATE INDEX IF NOT EXISTS console_sessions_created ON console_sessions (created_at);`

/** The column the idle timeout reads (a later schema step than the table's); SQL type per backend. */
export const CONSOLE_SESSIONS_LAST_SEEN: readonly [name: string, type: string] = ['last_seen_at', 'BIGINT']

/**
 * The statements of a SessionWrite in either SQL dialect (`p(i)` is the i-th placeholder, from 1). Both
 * deletes are bounded: the sweep by `sweep` rows, the cap by the rows beyond `max` (one, normally).
 */
export function sessionWriteSql(w: SessionWrite, p: (i: number) => string, dialect: 'sqlite' | 'postgres'): Array<{ sql: string; values: Array<string | number> }> {
  if (w.action === 'delete') return [{ sql: `DELETE FROM console_sessions WHERE id_sha256 = ${p(1)}`, values: [w.idSha256] }]
  if (w.action === 'touch') return [{ sql: `UPDATE console_sessions SET last_seen_at = ${p(1)} WHERE id_sha256 = ${p(2)}`, values: [w.at, w.idSha256] }]
  const s = w.session
  // SQLite allows OFFSET only after a LIMIT; -1 is "no limit".
  const offset = (i: number) => dialect === 'sqlite' ? `LIMIT -1 OFFSET ${p(i)}` : `OFFSET ${p(i)}`
  return [
    { sql: `DELETE FROM console_sessions WHERE id_sha256 IN (SELECT id_sha256 FROM console_sessions WHERE expires_at <= ${p(1)} LIMIT ${p(2)})`, values: [w.now, w.sweep] },
    {
      sql: `INSERT INTO console_sessions (id_sha256, principal, created_at, last_seen_at, expires_at, sealed) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)})`,
      values: [s.idSha256, s.principal, s.createdAt, s.lastSeenAt, s.expiresAt, s.sealed],
    },
    // The new session is kept whatever the clock says; of the others, the newest max - 1.
    {
      sql: `DELETE FROM console_sessions WHERE id_sha256 IN (SELECT id_sha256 FROM console_sessions WHERE id_sha256 <> ${p(1)} ORDER BY created_at DESC, id_sha256 DESC ${offset(2)})`,
      values: [s.idSha256, w.max - 1],
    },
  ]
}
