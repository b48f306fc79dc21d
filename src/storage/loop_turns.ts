/**
 * Milliseconds of verification on the event loop (parse, canonical form, SHA-256, MAC, columns; ~10-20 µs a
 * record) before a walk of the log lets the loop turn. By time, not by rows, and in the walk, not in a
 * backend's scan: paged by SQLite's 500-row reads alone, a run held the loop ~9 ms a read on average and up
 * to 25-35 ms, and a backend that yields many rows without a turn (MemoryStore) held it for the whole walk.
 * Used by the periodic check (revocation_check.ts) and retention's check before it prunes (prune_range.ts),
 * both of which run while serving.
 */
export const CHECK_SLICE_MS = 4

/**
 * Waits for an event-loop turn of its own: one slice per turn for all sliced walks in flight together.
 * Immediates queued in one turn all run in the next, back to back with no I/O polled between them: the
 * overview's three aggregates, each yielding on its own, ran a slice each and tripled the stall, and
 * retention's pre-prune walk and the periodic check (their timers fire together) doubled it. Chained turns
 * keep it to one slice.
 */
let lane: Promise<void> = Promise.resolve()
export function nextTurn(): Promise<void> {
  const turn = lane.then(() => new Promise<void>((r) => setImmediate(r)))
  lane = turn
  return turn
}

/**
 * Times one walk: `due()` says whether CHECK_SLICE_MS have passed since the walk began or last turned, and
 * `turn()` waits for a turn of its own (nextTurn) and starts the next slice. Asked once a row; a turn only when due, so
 * a walk of millions of rows costs a clock read a row, not a macrotask.
 */
export class LoopTurns {
  #sliceStart = performance.now()

  due(): boolean {
    return performance.now() - this.#sliceStart >= CHECK_SLICE_MS
  }

  async turn(): Promise<void> {
    await nextTurn()
    this.#sliceStart = performance.now()
  }
}
