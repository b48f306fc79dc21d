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

/** A sign-in at IAM in progress, keyed by its `state`. */
export interface PendingSignIn {
  codeVerifier: string
  nonce: string
  expiresAt: number
}

/** Sessions kept at once; the oldest go first (a flood of sign-ins cannot grow memory without bound). */
const MAX_SESSIONS = 1000
const MAX_PENDING = 1000
/** How long a sign-in at IAM may take. */
export const PENDING_SECONDS = 600

/**
 * Console sessions and pending sign-ins, in memory: a restart signs everyone out, and replicas do not share
 * them (a load balancer needs sticky sessions for /console). Ids are 256 random bits; only their SHA-256
 * is kept, so a heap dump does not hand out live session cookies.
 */
export class ConsoleSessions {
  readonly #sessions = new Map<string, ConsoleSession>()
  readonly #pending = new Map<string, PendingSignIn>()

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

  /** Remembers a sign-in under its `state` (random, from the relying party) until the callback. */
  begin(state: string, p: PendingSignIn): void {
    if (this.#pending.size >= MAX_PENDING) this.#pending.delete(this.#pending.keys().next().value!)
    this.#pending.set(state, p)
  }

  /** The pending sign-in for `state`, once: a replayed callback finds nothing. */
  take(state: string, now: number): PendingSignIn | undefined {
    const p = this.#pending.get(state)
    this.#pending.delete(state)
    return p && p.expiresAt > now ? p : undefined
  }
}

function digest(id: string): string {
  return createHash('sha256').update(id).digest('base64url')
}

/** Constant-time comparison of two tokens of any length. */
export function sameToken(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())
}
