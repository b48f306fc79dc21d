import type { StatementSync } from 'node:sqlite'
import { nextTurn } from './loop_turns.ts'

/**
 * Records one slice covers at most (plus any sharing its last second). node:sqlite runs on the event loop:
 * a GROUP BY over a month of a large log held it for a second or more, so no POST /token was answered
 * meanwhile. On a 1,000,000-record log a slice of 2500 counted by label takes about 2 ms, by denial reason
 * (json_extract on the body) about 4 ms (see docs/audit.md).
 */
export const SLICE_ROWS = 2500

/** Past every stored time (whole seconds, safe integers): the `to` of a range with no upper end. */
export const NO_END = 2 ** 53

/** One slice per event-loop turn for every sliced walk in flight, SQLite's reads and the log's checks alike. */
export { nextTurn }

/**
 * Runs `step` over [from, to) in consecutive, disjoint time slices of about `rows` records, one slice per
 * event-loop turn (the first one too). `boundary` must be
 * `SELECT time FROM … WHERE <same filter> AND time >= ? AND time < ? ORDER BY time LIMIT 1 OFFSET ?`:
 * the time of the `rows`-th record from a slice's start, so a slice is sized by records (an index walk),
 * not by a guess in seconds. For no upper end, `to` = NO_END.
 *
 * Every record lies in exactly one slice, so summing per-slice counts per group key gives the single
 * query's counts exactly, a bucket cut by a slice edge included. Slices are read milliseconds apart, not
 * in one snapshot: see SqliteStore.countByTime for why an overview accepts that.
 */
export async function forEachSlice(
  boundary: StatementSync,
  from: number,
  to: number,
  step: (lo: number, hi: number) => void,
  rows = SLICE_ROWS,
): Promise<void> {
  let lo = from
  // Terminates: each turn either ends the range or moves lo strictly forward towards `to` (or the last record).
  for (;;) {
    await nextTurn()
    const next = (boundary.get(lo, to, rows) as { time: number } | undefined)?.time
    if (next === undefined) { step(lo, to); return }
    // More than `rows` records in one second: that second alone is the slice.
    const hi = Math.max(Number(next), lo + 1)
    step(lo, hi)
    lo = hi
    if (lo >= to) return
  }
}

/**
 * Newest first: runs `step` over [from, to] (inclusive) in consecutive, disjoint time slices of about `rows`
 * records, from `to` down, one per event-loop turn, until `step` returns true (it has what it needs) or the
 * range is done. `boundary(hi, from, rows)` is the time of the record `rows` places below the newest in
 * [from, hi] (`ORDER BY time DESC LIMIT 1 OFFSET rows`), or undefined when fewer remain. A query ordered by
 * time descending reads the slices in its own order, so their rows, concatenated, are the single query's.
 */
export async function forEachSliceDesc(
  boundary: (hi: number, from: number, rows: number) => number | undefined,
  from: number,
  to: number,
  step: (lo: number, hi: number) => boolean,
  rows = SLICE_ROWS,
): Promise<void> {
  let hi = to
  // Terminates: each turn either ends the range or moves hi strictly down towards `from`.
  while (hi >= from) {
    await nextTurn()
    const next = boundary(hi, from, rows)
    if (next === undefined) { step(from, hi); return }
    // More than `rows` records in one second: that second alone is the slice.
    const lo = Math.min(next + 1, hi)
    if (step(lo, hi)) return
    hi = lo - 1
  }
}

/**
 * A GROUP BY count read in slices (forEachSlice): `read(lo, hi)` counts one slice, and `count` is summed
 * over rows with equal `key` (one group's per-slice partial counts), so the result holds the single query's
 * rows (in no particular order).
 */
export async function sumSlices<R extends { count: number }>(
  boundary: StatementSync,
  from: number,
  to: number,
  read: (lo: number, hi: number) => readonly R[],
  key: (r: R) => string,
  rows = SLICE_ROWS,
): Promise<R[]> {
  const merged = new CountMerger(key)
  await forEachSlice(boundary, from, to, (lo, hi) => merged.add(read(lo, hi)), rows)
  return merged.rows()
}

/** Sums `count` over rows with equal keys (the per-slice partial counts of one group). */
class CountMerger<R extends { count: number }> {
  readonly #rows = new Map<string, R>()
  readonly #key: (r: R) => string

  constructor(key: (r: R) => string) {
    this.#key = key
  }

  add(rows: readonly R[]): void {
    for (const r of rows) {
      const k = this.#key(r)
      const have = this.#rows.get(k)
      if (have) have.count += r.count
      else this.#rows.set(k, { ...r })
    }
  }

  rows(): R[] {
    return [...this.#rows.values()]
  }
}

/** SQLite's ORDER BY on TEXT: NULL first, then by UTF-8 bytes (BINARY collation), unlike JS's UTF-16 `<`. */
export function compareSqlText(a: string | null, b: string | null): number {
  if (a === b) return 0
  if (a === null) return -1
  if (b === null) return 1
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}
