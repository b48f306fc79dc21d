import { hash } from 'node:crypto'
import type { AuditEvent, AuditRecord, ChainVerification } from './audit_log.ts'
import { macProblem, MACS_STARTED, type AuditMacKey } from './record_mac.ts'
import { eventFromColumns, readBody } from './unreadable_record.ts'

/** The seq and hash of the newest record, kept beside the chain (table audit_head); seq 0 when empty. */
export interface ChainHead { seq: number; hash: string }

/** Why nothing can be judged about the tail when the head row is gone (deleted by hand). */
export const HEAD_MISSING = 'the chain head (table audit_head) is missing'

/** `prevHash` of record 1. */
export const GENESIS_HASH = '0'.repeat(64)

/**
 * The event as stored and hashed: JSON with keys sorted at every level and undefined members dropped, so
 * every backend (and a re-implementation in another language) produces the same bytes for the same event.
 * Stored verbatim as TEXT (never PostgreSQL jsonb, which would reorder keys).
 */
export function encodeEventBody(event: AuditEvent): string {
  return JSON.stringify(sortKeys(event))
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k]
      if (x !== undefined) out[k] = sortKeys(x)
    }
    return out
  }
  return v
}

/** sha256 over seq, the previous hash and the body: editing, reordering or re-linking a record changes it. */
export function recordHash(seq: number, prevHash: string, body: string): string {
  return hash('sha256', `${seq}\n${prevHash}\n${body}`, 'hex')
}

/**
 * The indexed columns derived from an event. They are copies for filtering only: queries return the
 * hashed body, and `verify` checks the columns still equal what the body says.
 */
export interface AuditColumns {
  time: number
  type: string
  request_id: string | null
  caller_iss: string | null
  caller_sub: string | null
  client_id: string | null
  role: string | null
  token_kind: string | null
  issued_sub: string | null
  jti: string | null
  decision: string | null
  exp: number | null
  site: string | null
}

export const COLUMN_NAMES = [
  'time', 'type', 'request_id', 'caller_iss', 'caller_sub', 'client_id', 'role', 'token_kind',
  'issued_sub', 'jti', 'decision', 'exp', 'site',
] as const satisfies readonly (keyof AuditColumns)[]

export function columnsOf(e: AuditEvent): AuditColumns {
  return {
    time: e.time,
    type: e.type,
    request_id: e.requestId ?? null,
    caller_iss: e.caller?.iss ?? null,
    caller_sub: e.caller?.sub ?? null,
    client_id: e.caller?.client_id ?? null,
    role: e.role ?? null,
    token_kind: e.tokenKind ?? null,
    issued_sub: e.issuedSub ?? null,
    jti: e.jti ?? null,
    decision: e.decision ?? null,
    exp: e.exp ?? null,
    site: e.site ?? null,
  }
}

/** Rejects events that could not be stored faithfully (the chain would not verify later). */
export function assertStorableEvent(e: AuditEvent): void {
  if (!Number.isSafeInteger(e.time) || e.time < 0) throw new TypeError('audit event time must be whole epoch seconds')
  if (e.exp !== undefined && !Number.isSafeInteger(e.exp)) throw new TypeError('audit event exp must be whole epoch seconds')
}

/** Detail of an `audit.checkpoint` record: what retention removed, so the remaining chain stays anchored. */
export interface CheckpointDetail {
  prunedThroughSeq: number
  /** Hash of record `prunedThroughSeq`; it transitively covers every pruned record. */
  prunedLastHash: string
  prunedCount: number
  before: number
  /** Where MACs began (record_mac.ts), carried on when retention removes the record that said so. */
  macFrom?: number
}

/** A row as read back from a backend, before trusting anything in it. */
export interface StoredRow extends AuditColumns {
  seq: number
  body: string
  prev_hash: string
  hash: string
  /** The record's MAC (record_mac.ts); null or absent on records written before MACs began. */
  mac?: string | null
}

/** Where a verifier learns that MACs began: the first MAC'd record's statement, or a checkpoint carrying it on. */
export function statedMacFrom(event: AuditEvent): number | undefined {
  if (event.type !== MACS_STARTED && event.type !== 'audit.checkpoint') return undefined
  return macFromValue((event.detail as { macFrom?: unknown } | undefined)?.macFrom)
}

/** A stated `macFrom` when it is one (a seq: a safe integer from 1), else undefined. */
export function macFromValue(from: unknown): number | undefined {
  return Number.isSafeInteger(from) && (from as number) >= 1 ? from as number : undefined
}

/** Why a record at `seq` cannot stand without a MAC, once MACs began at `from`. */
export function noMacReason(from: number): string {
  return `record has no MAC, but the broker has put one on every record since seq ${from} (written outside the broker)`
}

/**
 * Why a record with a valid MAC cannot follow one without: the broker opens MACs with a statement, and
 * from then on every record it writes has one, so the one place a MAC-less record is followed by a MAC'd
 * one is the statement. Elsewhere, the records since the statement were deleted and written again
 * without MACs, while a broker that had already opened MACs (and remembers so) went on writing.
 */
export const MAC_WITHOUT_START = 'record carries the broker\'s MAC but the record before it has none, and MACs begin only at an audit.macs_started record (records since MACs began were rewritten without them)'

/** What one record's MAC says on its own (the console's record page): `fault` when it cannot be the broker's. */
export interface MacVerdict {
  fault?: string
  /** What the MAC shows when nothing is wrong with it. */
  note?: string
}

/**
 * The local part of the MAC checks (ChainVerifier's, for one record and its predecessor): a MAC must verify
 * under the key; a MAC'd record after a MAC-less one must be the statement opening MACs; a MAC-less record
 * after a MAC'd one was not written by the broker. A MAC-less record after another is judged only by a
 * check of the whole chain (where MACs began), which the page points to.
 */
export function judgeRecordMac(row: StoredRow, previous: StoredRow | undefined, key: AuditMacKey | undefined): MacVerdict {
  const has = (r: StoredRow) => typeof r.mac === 'string' && r.mac !== ''
  if (!has(row)) {
    if (previous && has(previous)) return { fault: 'record has no MAC, but the record before it has one (written outside the broker)' }
    return { note: 'none: written before MACs began, unless the chain check (overview) says MACs had begun by then' }
  }
  if (!key) return { note: 'present, not checked: this broker has no audit MAC key' }
  const problem = macProblem(key, row.hash, row.mac!)
  if (problem !== undefined) return { fault: problem }
  const event = readBody(row.body)
  if (previous && !has(previous) && (typeof event === 'string' || event.type !== MACS_STARTED)) return { fault: MAC_WITHOUT_START }
  return { note: `the broker's (key ${key.kid})` }
}

/** Options of a chain check that also judges MACs. */
export interface MacCheck {
  /** Checks each MAC against this key; without it only a MAC's absence after `macFrom` can be told. */
  key?: AuditMacKey
  /** Where MACs began, as an earlier check (a sealed anchor) found it. */
  macFrom?: number
}

/**
 * Parses a stored row into a record (trusting the body, not the columns). A body that is no event (edited
 * by hand, or corrupted) gives an unreadable record at its seq, its event what the columns say
 * (unreadable_record.ts), rather than failing every read that meets it.
 */
export function rowToRecord(row: StoredRow): AuditRecord {
  const read = readBody(row.body)
  if (typeof read === 'string') return { seq: Number(row.seq), event: eventFromColumns(row), prevHash: row.prev_hash, hash: row.hash, unreadable: { reason: read, body: row.body } }
  return { seq: Number(row.seq), event: read, prevHash: row.prev_hash, hash: row.hash }
}

/**
 * What one row says about itself, without its neighbours: a canonical body whose hash (over seq and
 * prev_hash) is the stored one, and indexed columns equal to what the body says. Returns the event, or why not.
 */
export function checkRecord(row: StoredRow): AuditEvent | string {
  let event: AuditEvent
  try {
    event = JSON.parse(row.body) as AuditEvent
  } catch {
    return 'body is not valid JSON'
  }
  if (typeof event !== 'object' || event === null || encodeEventBody(event) !== row.body) return 'body is not in canonical form'
  if (recordHash(Number(row.seq), row.prev_hash, row.body) !== row.hash) return 'hash does not match the record content (record edited)'
  const [column] = columnDifferences(row, event)
  if (column !== undefined) return columnDiffers(column)
  return event
}

/** How `audit verify` and the console's record page name an indexed column that no longer says what the body says. */
export function columnDiffers(column: string): string {
  return `column ${column} differs from the hashed body (record edited)`
}

/**
 * The indexed columns of `row` that differ from what `event` (its parsed body) says, in COLUMN_NAMES order.
 * Searches and counts select by these columns, so one edited beside an untouched body hides or moves a record.
 */
export function columnDifferences(row: StoredRow, event: AuditEvent): (keyof AuditColumns)[] {
  const cols = columnsOf(event)
  return COLUMN_NAMES.filter((c) => {
    // PostgreSQL hands bigint columns back as strings.
    const stored = row[c] === null || row[c] === undefined ? null : typeof cols[c] === 'number' ? Number(row[c]) : row[c]
    return stored !== cols[c]
  })
}

/**
 * Checks a chain fed in seq order. Detects edited bodies or columns, edited hashes, re-linking, deleted or
 * re-ordered records, a pruned prefix no checkpoint vouches for, and a truncated tail (against the stored head).
 */
export class ChainVerifier {
  #count = 0
  #first: { seq: number; prevHash: string } | undefined
  #last: { seq: number; hash: string } | undefined
  #anchored = false
  #broken: { seq: number; reason: string } | undefined
  readonly #macKey: AuditMacKey | undefined
  /** Lowest seq known to be in the MAC era: stated, carried, from an anchor, or the first record with a valid MAC. */
  #macFrom: number | undefined
  /** Runs [first, last] of MAC-less records fed before `#macFrom` was known: judged once it is. */
  #macless: Array<[number, number]> = []
  /** Whether the record fed last had no MAC (false before the first: a resumed check did not see it). */
  #lastMacless = false

  /**
   * Resumes after a record verified earlier (`after`, from a sealed anchor): the first row fed must be
   * `after.seq + 1` and link to `after.hash`. Without it, verification starts at the first record.
   */
  constructor(after?: { seq: number; hash: string }, mac: MacCheck = {}) {
    if (after) { this.#last = { ...after }; this.#anchored = true }
    this.#macKey = mac.key
    this.#macFrom = mac.macFrom
  }

  /** Where MACs began, as far as the records fed (and the anchor) tell; undefined: none seen. */
  get macFrom(): number | undefined {
    return this.#macFrom
  }

  /** Lowers the MAC era's start to `from` and fails on a MAC-less record already fed at or after it. */
  #macEraFrom(from: number): string | undefined {
    if (this.#macFrom !== undefined && this.#macFrom <= from) return undefined
    this.#macFrom = from
    const run = this.#macless.find(([, last]) => last >= from)
    if (!run) return undefined
    const seq = Math.max(run[0], from)
    this.#broken = { seq, reason: noMacReason(from) }
    return this.#broken.reason
  }

  /** The MAC part of feeding `row` (already found intact and linked); false once broken. */
  #feedMac(row: StoredRow, seq: number, event: AuditEvent): boolean {
    const stated = statedMacFrom(event)
    if (stated !== undefined && stated <= seq && this.#macEraFrom(stated) !== undefined) return false
    const mac = typeof row.mac === 'string' && row.mac !== '' ? row.mac : undefined
    const afterMacless = this.#lastMacless
    this.#lastMacless = mac === undefined
    if (mac === undefined) {
      if (this.#macFrom !== undefined && seq >= this.#macFrom) { this.#broken = { seq, reason: noMacReason(this.#macFrom) }; return false }
      const run = this.#macless.at(-1)
      if (run && run[1] === seq - 1) run[1] = seq
      else this.#macless.push([seq, seq])
      return true
    }
    if (!this.#macKey) return true
    const problem = macProblem(this.#macKey, row.hash, mac)
    if (problem !== undefined) { this.#broken = { seq, reason: problem }; return false }
    if (afterMacless && event.type !== MACS_STARTED) { this.#broken = { seq, reason: MAC_WITHOUT_START }; return false }
    // Only the broker can have written it: MACs had begun by then.
    return this.#macEraFrom(seq) === undefined
  }

  /** Feeds the next row; returns false once the chain is known broken (stop scanning). */
  feed(row: StoredRow): boolean {
    if (this.#broken) return false
    const seq = Number(row.seq)
    this.#count++
    const fail = (reason: string) => { this.#broken = { seq, reason }; return false }
    const checked = checkRecord(row)
    if (typeof checked === 'string') return fail(checked)
    const event = checked
    if (this.#last === undefined) {
      if (seq === 1) {
        if (row.prev_hash !== GENESIS_HASH) return fail('first record does not start from the genesis hash')
        this.#anchored = true
      }
    } else {
      if (seq !== this.#last.seq + 1) {
        this.#broken = { seq: this.#last.seq + 1, reason: `record missing (next present record is seq ${seq})` }
        return false
      }
      if (row.prev_hash !== this.#last.hash) return fail(`prev_hash does not match the hash of record ${this.#last.seq}`)
    }
    if (!this.#feedMac(row, seq, event)) return false
    if (this.#first === undefined) this.#first = { seq, prevHash: row.prev_hash }
    if (event.type === 'audit.checkpoint' && this.#first.seq > 1) {
      const d = event.detail as Partial<CheckpointDetail> | undefined
      if (d?.prunedThroughSeq === this.#first.seq - 1 && d.prunedLastHash === this.#first.prevHash) this.#anchored = true
    }
    this.#last = { seq, hash: row.hash }
    return true
  }

  /** The first problem found so far, if any. */
  get broken(): { seq: number; reason: string } | undefined {
    return this.#broken && { ...this.#broken }
  }

  /**
   * Whether what was fed so far starts where it may: at seq 1 from the genesis hash, after an anchor, or
   * after a gap that a checkpoint fed since vouches for.
   */
  get anchored(): boolean {
    return this.#anchored
  }

  /** Final verdict, given the head the backend stores separately (seq 0 when empty; undefined when its row is gone). */
  finish(head: ChainHead | undefined): ChainVerification {
    if (this.#broken) return { ok: false, records: this.#count, broken: this.#broken }
    if (!head) {
      return { ok: false, records: this.#count, broken: { seq: (this.#last?.seq ?? 0) + 1, reason: `${HEAD_MISSING}, so records cut off the end cannot be ruled out` } }
    }
    if (!this.#last) {
      if (head.seq === 0) return { ok: true, records: 0, head: { seq: 0, hash: GENESIS_HASH }, firstSeq: 0 }
      return { ok: false, records: 0, broken: { seq: head.seq, reason: `all records are missing (head says seq ${head.seq})` } }
    }
    if (!this.#anchored) {
      return { ok: false, records: this.#count, broken: { seq: this.#first!.seq, reason: `records before seq ${this.#first!.seq} are missing and no checkpoint vouches for their removal` } }
    }
    if (head.seq !== this.#last.seq || head.hash !== this.#last.hash) {
      const seq = head.seq > this.#last.seq ? this.#last.seq + 1 : this.#last.seq
      return { ok: false, records: this.#count, broken: { seq, reason: `chain head says seq ${head.seq} but the last record is seq ${this.#last.seq} (records removed or head edited)` } }
    }
    return { ok: true, records: this.#count, head: this.#last, firstSeq: this.#first?.seq ?? this.#last.seq + 1, ...(this.#macFrom !== undefined ? { macFrom: this.#macFrom } : {}) }
  }
}
