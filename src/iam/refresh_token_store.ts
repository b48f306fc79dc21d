/**
 * Where the broker keeps IAM refresh tokens it obtained with `offline_access` . Refresh
 * tokens never leave the broker (docs/iam-and-wlcg.md §3.3). IAM may rotate them on every refresh and make the
 * old one single-use (§1.4), so the newest must always be the one stored.
 *
 * Implementations: MemoryRefreshTokenStore below (lost on restart), and the users' job credentials in
 * src/credentials/sealed_refresh_tokens.ts (sealed at rest, rotations compare-and-swap), which keep the
 * compare-and-delete semantics of `delete`.
 */
export interface StoredRefreshToken {
  /** The refresh token itself: a secret; never log, audit or return it. */
  refreshToken: string
  /** Exact IAM issuer that issued it. */
  issuer: string
  /** The IAM `sub` it acts for. */
  subject: string
  /** The broker client_id it was issued to. */
  clientId: string
  /** Scopes granted with it (offline_access included). */
  scopes: string[]
  audience: string[]
  /** Epoch seconds when this (possibly rotated) token was stored. */
  obtainedAt: number
}

export interface RefreshTokenStore {
  get(key: string): Promise<StoredRefreshToken | undefined>
  /**
   * Replaces any earlier token under `key`. Resolves once durable, or once held by a store that keeps a
   * token it could not write yet for every later `get` while it retries the write (the sealed credential
   * table does: IAM has already retired the old token, so dropping the new one would end the grant).
   */
  put(key: string, record: StoredRefreshToken): Promise<void>
  /**
   * Deletes the entry; when `ifRefreshToken` is given, only if it still holds that token (so a newer rotation
   * is not lost). Resolves false when it kept a newer token: the refused one had already been rotated away.
   */
  delete(key: string, ifRefreshToken?: string): Promise<boolean>
}

/** Process-memory store: for tests, the development IAM and single-instance deployments that accept losing refresh tokens on restart. */
export class MemoryRefreshTokenStore implements RefreshTokenStore {
  readonly #map = new Map<string, StoredRefreshToken>()

  async get(key: string): Promise<StoredRefreshToken | undefined> {
    const r = this.#map.get(key)
    return r ? { ...r, scopes: [...r.scopes], audience: [...r.audience] } : undefined
  }

  async put(key: string, record: StoredRefreshToken): Promise<void> {
    this.#map.set(key, { ...record, scopes: [...record.scopes], audience: [...record.audience] })
  }

  async delete(key: string, ifRefreshToken?: string): Promise<boolean> {
    const held = this.#map.get(key)
    if (ifRefreshToken !== undefined && held !== undefined && held.refreshToken !== ifRefreshToken) return false
    this.#map.delete(key)
    return true
  }

  get size(): number {
    return this.#map.size
  }
}
