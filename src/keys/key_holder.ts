import type { SigningKeys } from './signing_keys.ts'

/**
 * The signing keys in force, swapped as one on reload. Readers hold `view`, whose members always read the
 * current set, so /jwks, minting and readiness see a rotation without being rebuilt; the swap is a single
 * assignment, so no reader ever sees half of an old set and half of a new one.
 */
export class KeyHolder {
  #current: SigningKeys
  readonly view: SigningKeys

  constructor(initial: SigningKeys) {
    this.#current = initial
    const holder = this
    this.view = {
      get idtoken() { return holder.#current.idtoken },
      get scitoken() { return holder.#current.scitoken },
      get jwks() { return holder.#current.jwks },
    }
  }

  get current(): SigningKeys { return this.#current }

  swap(next: SigningKeys): void { this.#current = next }
}
