import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/** A signed-in console user. The bearer is re-checked on every request, exactly as the admin API checks it. */
export interface ConsoleSession {
  /** The credential the admin decision runs on: an IAM access token, or the bootstrap admin token. */
  bearer: string
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

/** Sessions kept at once; the oldest go first. Only an admin's sign-in makes one. */
const MAX_SESSIONS = 1000
/** How long a sign-in at IAM may take. */
export const PENDING_SECONDS = 600

/**
 * Console sessions, in memory: a restart signs everyone out, and replicas do not share
 * them (a load balancer needs sticky sessions for /console). Ids are 256 random bits; only their SHA-256
 * is kept, so a heap dump does not hand out live session cookies.
 */
export class ConsoleSessions {
  readonly #sessions = new Map<string, ConsoleSession>()

  create(s: Omit<ConsoleSession, 'csrf'>): { id: string; session: ConsoleSession } {
    const id = randomBytes(32).toString('base64url')
    const session = { ...s, csrf: randomBytes(32).toString('base64url') }
    if (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!)
    this.#sessions.set(digest(id), session)
    return { id, session }
  }

  get(id: string | undefined, now: number): ConsoleSession | undefined {
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined
    const key = digest(id)
    const s = this.#sessions.get(key)
    if (s && s.expiresAt <= now) { this.#sessions.delete(key); return undefined }
    return s
  }

  delete(id: string | undefined): void {
    if (id) this.#sessions.delete(digest(id))
  }
}

function digest(id: string): string {
  return createHash('sha256').update(id).digest('base64url')
}

/** Constant-time comparison of two tokens of any length. */
export function sameToken(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())
}
