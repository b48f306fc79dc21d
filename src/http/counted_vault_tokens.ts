/**
 * The digests of unknown Vault tokens that have already counted against a client address
 * (rate_limits.address), so that each counts once. A `.top` left behind when its credential was registered
 * again elsewhere (a new Vault token) is read at every scan of a credmon that keeps it, and would otherwise
 * block its access point's legitimate reads; a guesser sends a new token each time, and each still counts.
 *
 * One remembered here is refused without asking the store again: the broker's Vault tokens are random
 * values made at registration, so a token the store did not hold stays unknown. Otherwise an address
 * looping on one unknown token, no longer blocked for it, would cost a store query per request.
 *
 * Bounded: past `max` entries the oldest is forgotten, so the worst a flood of new tokens does is have a
 * stale token looked up and counted once more. Per process, as the address counts are.
 */
export class CountedVaultTokens {
  readonly #seen = new Set<string>()
  readonly #max: number

  constructor(max = 4096) {
    this.#max = max
  }

  /** Whether `digest` is an unknown token already counted (refuse it without a store query, uncounted). */
  has(digest: string): boolean {
    return this.#seen.has(digest)
  }

  /** True the first time `digest` is seen (it should count), false after, until it is forgotten. */
  firstTime(digest: string): boolean {
    if (this.#seen.has(digest)) return false
    if (this.#seen.size >= this.#max) this.#seen.delete(this.#seen.values().next().value!)
    this.#seen.add(digest)
    return true
  }
}
