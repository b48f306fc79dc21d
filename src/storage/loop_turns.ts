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
 * Times one walk: `due()` says whether CHECK_SLICE_MS have passed since the walk began or last turned, and
 * `turn()` waits one setImmediate turn and starts the next slice. Asked once a row; a turn only when due, so
 * a walk of millions of rows costs a clock read a row, not a macrotask.
 */
export class LoopTurns {
  #sliceStart = performance.now()

  due(): boolean {
    return performance.now() - this.#sliceStart >= CHECK_SLICE_MS
  }

  async turn(): Promise<void> {
    await new Promise<void>((r) => setImmediate(r))
    this.#sliceStart = performance.now()
  }
}
