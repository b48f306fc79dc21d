import { createHash, timingSafeEqual } from 'node:crypto'
import { isSessionId, newSessionId, openSecrets, sealSecrets, sessionCsrf, sessionDigest } from './session_seal.ts'
import type { ConsoleSessionStore } from './session_store.ts'

/** A signed-in console user. The bearer is re-checked on every request, exactly as the admin API checks it. */
export interface ConsoleSession {
  /** The credential the admin decision runs on: an IAM access token, or the bootstrap admin token. */
  bearer: string
  /** The ID token of an IAM sign-in, for id_token_hint at sign-out (absent for the bootstrap token). */
  idToken?: string
  /** Shown in the header and used as the audit actor. */
  principal: string
  /** Sent in every form; a POST without it is refused. */
  csrf: string
  expiresAt: number
}

/** A sign-in at IAM in progress: kept in the browser's sign-in cookie until the callback. */
export interface PendingSignIn {
  state: string
  codeVerifier: string
  nonce: string
  expiresAt: number
}

/**
 * Sessions kept at once; a sign-in beyond it ends the oldest session (rather than refusing the sign-in:
 * only admins make sessions, and one who lost a session signs in again). Bounds the table.
 */
export const MAX_SESSIONS = 1000
/** Expired rows each sign-in removes besides its own work; reads remove the expired row they meet. */
export const SWEEP_ROWS = 100
/**
 * Idle timeout when none is configured (admin.console.idle_seconds): 30 minutes, the idle limit OWASP ASVS
 * v4 §3.3.2 sets for level 2 and Keycloak's default SSO Session Idle.
 */
export const DEFAULT_IDLE_SECONDS = 1800
/** How long a sign-in at IAM may take. */
export const PENDING_SECONDS = 600
/**
 * Activity is written at most this often (and at least ten times per idle window): a click is a read, not
 * a write on the store's one write path. The idle timeout can therefore end a session up to this much
 * earlier than idleSeconds after the last click, never later.
 */
export const TOUCH_SECONDS = 60

/**
 * Console sessions, kept in the broker store: they survive a restart, and every replica on the same
 * database honours them (sign-out on one ends the session on all). Ids are 256 random bits held only by
 * the browser; the store keeps their SHA-256 and the bearer sealed under the id (session_seal.ts).
 */
export class ConsoleSessions {
  readonly #store: ConsoleSessionStore
  readonly #max: number
  readonly #idle: number
  readonly #touchAfter: number

  /** `idleSeconds`: a session without a request for that long is over (absent: only its expiry ends it). */
  constructor(store: ConsoleSessionStore, options: { max?: number; idleSeconds?: number } = {}) {
    this.#store = store
    this.#max = options.max ?? MAX_SESSIONS
    this.#idle = options.idleSeconds ?? Infinity
    this.#touchAfter = Math.max(1, Math.min(TOUCH_SECONDS, Math.floor(this.#idle / 10)))
  }

  async create(s: Omit<ConsoleSession, 'csrf'>, now: number): Promise<{ id: string; session: ConsoleSession }> {
    const id = newSessionId()
    const idSha256 = sessionDigest(id)
    const sealed = sealSecrets(id, { bearer: s.bearer, ...(s.idToken !== undefined ? { idToken: s.idToken } : {}) }, { idSha256, principal: s.principal, expiresAt: s.expiresAt })
    await this.#store.writeConsoleSession({
      action: 'create', session: { idSha256, principal: s.principal, createdAt: now, lastSeenAt: now, expiresAt: s.expiresAt, sealed }, now, max: this.#max, sweep: SWEEP_ROWS,
    })
    return { id, session: { ...s, csrf: sessionCsrf(id) } }
  }

  /**
   * The live session of this cookie value, which this request counts as activity on. An expired or idle
   * row, or one that does not open, is removed (fail closed: signed out).
   */
  async get(id: string | undefined, now: number): Promise<ConsoleSession | undefined> {
    if (!isSessionId(id)) return undefined
    const idSha256 = sessionDigest(id)
    const row = await this.#store.readConsoleSession(idSha256)
    if (!row) return undefined
    const live = row.expiresAt > now && now - row.lastSeenAt < this.#idle
    const secrets = live ? openSecrets(id, row.sealed, { idSha256, principal: row.principal, expiresAt: row.expiresAt }) : undefined
    if (secrets === undefined) {
      // Best effort: the session is refused either way, and the next sign-in's sweep removes what stays
      // (an idle row by its expiry; until then no request can use it, since it is idle on every replica).
      await this.#store.writeConsoleSession({ action: 'delete', idSha256 }).catch(() => {})
      return undefined
    }
    if (now - row.lastSeenAt >= this.#touchAfter) {
      // Best effort as well: a write that does not land leaves the older time, so the session ends sooner
      // (fail closed), and a store that cannot write must not take the console's reads down with it.
      await this.#store.writeConsoleSession({ action: 'touch', idSha256, at: now }).catch(() => {})
    }
    return { ...secrets, principal: row.principal, csrf: sessionCsrf(id), expiresAt: row.expiresAt }
  }

  /**
   * The session this cookie value names, for signing it out: opened whether or not it is still live, and
   * not counted as activity. An admin who comes back to an idle console and presses "Sign out" expects the
   * IAM session ended too (its ID token is the id_token_hint), and the idle limit ended only the console's;
   * the caller checks the form's CSRF token against `csrf` before acting on `idToken`. Undefined when there
   * is no row or it does not open.
   */
  async forSignOut(id: string | undefined, now: number): Promise<{ live: boolean; csrf: string; idToken?: string } | undefined> {
    if (!isSessionId(id)) return undefined
    const idSha256 = sessionDigest(id)
    const row = await this.#store.readConsoleSession(idSha256)
    if (!row) return undefined
    const secrets = openSecrets(id, row.sealed, { idSha256, principal: row.principal, expiresAt: row.expiresAt })
    if (secrets === undefined) return undefined
    const live = row.expiresAt > now && now - row.lastSeenAt < this.#idle
    return { live, csrf: sessionCsrf(id), ...(secrets.idToken !== undefined ? { idToken: secrets.idToken } : {}) }
  }

  async delete(id: string | undefined): Promise<void> {
    if (isSessionId(id)) await this.#store.writeConsoleSession({ action: 'delete', idSha256: sessionDigest(id) })
  }
}

/** Constant-time comparison of two tokens of any length. */
export function sameToken(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())
}
