/**
 * Runs the operations of one key one after another, in call order, whether the one before succeeded or
 * failed; different keys run concurrently. A key's entry goes once its last operation settles.
 */
export class SerialByKey {
  readonly #tails = new Map<string, Promise<unknown>>()

  run<T>(key: string, op: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve()
    const run = prev.then(() => op(), () => op())
    const tail = run.catch(() => {})
    this.#tails.set(key, tail)
    void tail.then(() => { if (this.#tails.get(key) === tail) this.#tails.delete(key) })
    return run
  }
}
