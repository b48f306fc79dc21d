import { jtiSecond } from '../lib/jti.ts'

/**
 * Whether a row's jti needs an entry in the in-memory index: not when the jti tells the second of the
 * row's own `time` (lib/jti.ts), since a lookup then finds the row through the time index. Rows of the
 * broker's own tokens are written in the second their jti was made, all but the few whose issuance
 * straddled a second's end; entries are left for those, for jtis made before this scheme (or by a test
 * clock), and for other records that name a token later (a revocation by jti).
 */
export function needsJtiEntry(jti: string | null, time: number): jti is string {
  return jti !== null && jtiSecond(jti) !== time
}

/**
 * jti → audit seq, in memory, for the SQLite store: for the rows needsJtiEntry() picks.
 *
 * Why not an SQL index: a jti looks like 16 random bytes (lib/jti.ts), so each new entry lands on a
 * different page of a B-tree, and every group commit wrote one 4 KiB WAL page per record for it. That was
 * half of the SQLite writer's cost per record (writer_cost, 16-record batches: 45-60 µs with the index,
 * 32 µs without) and about 15-20% of POST /token throughput. Lookups by jti are rare (an auditor's query,
 * a revocation by jti), so the writer no longer pays for them on every token; the reader builds this
 * table from the log instead (only for the rows the time index cannot find) and catches up before each lookup.
 *
 * Layout: open addressing over two Uint32Arrays (a 32-bit FNV-1a hash of the jti, and the seq), 8 bytes a
 * slot, at most three quarters of the slots used (11-21 bytes per record; at most half used cost 16-32, and
 * 16 MB instead of 8 for the ~600,000 records of one `npm run bench`; lookups took the same 0.6-0.8 µs a hit,
 * 0.2-0.3 µs a miss, in both layouts); a hash shared by two jtis just yields both seqs, and the caller
 * re-checks the jti on the rows it reads. Entries for pruned records are dropped when the table grows.
 */
export class JtiIndex {
  #hashes: Uint32Array
  #seqs: Uint32Array
  #count = 0

  constructor(initialCapacity = 1 << 14) {
    const cap = 1 << Math.ceil(Math.log2(Math.max(16, initialCapacity)))
    this.#hashes = new Uint32Array(cap)
    this.#seqs = new Uint32Array(cap)
  }

  get size(): number {
    return this.#count
  }

  /** Records that `seq` carries `jti` (seq ≥ 1). `minLiveSeq`: entries below it may be dropped on growth. */
  add(jti: string, seq: number, minLiveSeq = 1): void {
    if (!Number.isSafeInteger(seq) || seq < 1 || seq > 0xffffffff) throw new RangeError(`audit seq ${seq} out of range for the jti index`)
    if ((this.#count + 1) * 4 > this.#seqs.length * 3) this.#grow(minLiveSeq)
    this.#insert(fnv1a(jti), seq)
  }

  /** The seqs whose jti may equal `jti` (a superset: re-check the rows). */
  candidates(jti: string): number[] {
    const h = fnv1a(jti)
    const mask = this.#seqs.length - 1
    const out: number[] = []
    // Bounded: the table is at most three quarters full, so a probe meets an empty slot within its length.
    for (let i = h & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
      const seq = this.#seqs[i]!
      if (seq === 0) break
      if (this.#hashes[i] === h) out.push(seq)
    }
    return out
  }

  #insert(h: number, seq: number): void {
    const mask = this.#seqs.length - 1
    for (let i = h & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
      if (this.#seqs[i] === 0) {
        this.#hashes[i] = h
        this.#seqs[i] = seq
        this.#count++
        return
      }
    }
    throw new Error('jti index full')
  }

  #grow(minLiveSeq: number): void {
    const hashes = this.#hashes
    const seqs = this.#seqs
    let live = 0
    for (let i = 0; i < seqs.length; i++) if (seqs[i]! >= minLiveSeq) live++
    // Double only if pruning does not leave room for as many again (below the 3/4 load `add` allows).
    const cap = (live + 1) * 8 > seqs.length * 3 ? seqs.length * 2 : seqs.length
    this.#hashes = new Uint32Array(cap)
    this.#seqs = new Uint32Array(cap)
    this.#count = 0
    for (let i = 0; i < seqs.length; i++) if (seqs[i]! >= minLiveSeq) this.#insert(hashes[i]!, seqs[i]!)
  }
}

/** 32-bit FNV-1a over the UTF-16 code units; jtis are ASCII in practice. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}
