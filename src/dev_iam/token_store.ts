import { createHash } from 'node:crypto'

/** Who a token speaks for: a user (password grant and its exchanges) or a client alone (client_credentials). */
export interface TokenSubject {
  sub: string
  /** Set for user-bound tokens; the development IAM looks the user up again on refresh and exchange. */
  username?: string
}

interface BaseRecord extends TokenSubject {
  /** The client the token was issued to. */
  clientId: string
  scopes: string[]
  iat: number
  exp: number
  /** RFC 8693 §4.1 `act` chain carried by exchanged tokens. */
  act?: Record<string, unknown>
}

export interface AccessTokenRecord extends BaseRecord {
  kind: 'access_token'
  jti: string
  /** The signed claims, for introspection. */
  claims: Readonly<Record<string, unknown>>
}

export interface RefreshTokenRecord extends BaseRecord {
  kind: 'refresh_token'
}

export type TokenRecord = AccessTokenRecord | RefreshTokenRecord

/**
 * The development IAM's token store: what makes "an access token this IAM issued and STILL HOLDS"
 * (docs/iam-and-wlcg.md §1.4) checkable, and what introspection and revocation read. Keyed by SHA-256 of the
 * token so no raw token sits in a map key; bounded so a long-running `npm start` cannot grow without limit.
 */
export class TokenStore {
  readonly #records = new Map<string, TokenRecord>()
  readonly #maxEntries: number

  constructor(maxEntries = 100_000) {
    this.#maxEntries = maxEntries
  }

  put(token: string, record: TokenRecord, now: number): void {
    if (this.#records.size >= this.#maxEntries) this.#evict(now)
    this.#records.set(key(token), record)
  }

  /** The live record for a token, or undefined when unknown, revoked or expired. */
  get(token: string, now: number): TokenRecord | undefined {
    const k = key(token)
    const rec = this.#records.get(k)
    if (!rec) return undefined
    if (rec.exp <= now) {
      this.#records.delete(k)
      return undefined
    }
    return rec
  }

  /** Forgets a token (revocation, RT rotation). Returns whether it was held. */
  delete(token: string): boolean {
    return this.#records.delete(key(token))
  }

  get size(): number {
    return this.#records.size
  }

  #evict(now: number): void {
    for (const [k, rec] of this.#records) if (rec.exp <= now) this.#records.delete(k)
    // Still full: drop the oldest insertions (Map keeps insertion order).
    const excess = this.#records.size - this.#maxEntries + 1
    if (excess <= 0) return
    let n = 0
    for (const k of this.#records.keys()) {
      if (n++ >= excess) break
      this.#records.delete(k)
    }
  }
}

function key(token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}
