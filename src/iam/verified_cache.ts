import { hash } from 'node:crypto'
import NodeCache from 'node-cache'
import type { VerifiedSubject } from './subject.ts'

/**
 * Verified subject tokens, keyed by the SHA-256 of the token (never the token itself, so a heap dump
 * holds no usable bearer token), kept until the token's `exp` : a busy caller costs
 * one signature check, not one per request. Entries are the deep-frozen subjects, stored without
 * cloning because the hot path of POST /token reads them.
 */
export class VerifiedSubjectCache {
  readonly #cache: NodeCache
  #full = false
  hits = 0
  misses = 0

  constructor(options: { maxEntries: number }) {
    this.#cache = new NodeCache({
      useClones: false,
      stdTTL: 0,
      checkperiod: 60,
      maxKeys: options.maxEntries,
    })
    // maxEntries 0 turns caching off (every request pays a signature check).
    this.#full = options.maxEntries === 0
  }

  /** The cache key for a token: base64url SHA-256. */
  static key(token: string): string {
    return hash('sha256', token, 'base64url')
  }

  /** A cached subject still valid at `now` (epoch seconds), if any. */
  get(key: string, now: number): VerifiedSubject | undefined {
    const s = this.#cache.get<VerifiedSubject>(key)
    if (s === undefined) { this.misses++; return undefined }
    // node-cache expires on wall time; the injected clock decides validity.
    if (s.exp <= now) { this.#cache.del(key); this.misses++; return undefined }
    this.hits++
    return s
  }

  /** Caches for `ttlSeconds` (≤ 0: not cached). A full cache is not an error: the token is simply re-verified next time. */
  set(key: string, subject: VerifiedSubject, ttlSeconds: number): void {
    if (ttlSeconds <= 0 || this.#full) return
    try {
      this.#cache.set(key, subject, Math.ceil(ttlSeconds))
    } catch {
      // ECACHEFULL: stop trying until the periodic sweep frees room.
      this.#full = true
      this.#cache.once('expired', () => { this.#full = false })
      return
    }
  }

  get size(): number {
    return this.#cache.keys().length
  }

  close(): void {
    this.#cache.close()
  }
}
