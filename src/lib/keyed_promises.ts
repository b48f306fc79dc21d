/**
 * Concurrent callers with the same key share one run (single flight): the first starts it, the others
 * get its promise until it settles; the next call after that starts a new run.
 */
export class SingleFlight<T> {
  readonly #inflight = new Map<string, Promise<T>>()

  run(key: string, op: () => Promise<T>): Promise<T> {
    let flight = this.#inflight.get(key)
    if (!flight) {
      flight = op().finally(() => this.#inflight.delete(key))
      this.#inflight.set(key, flight)
    }
    return flight
  }
}

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
