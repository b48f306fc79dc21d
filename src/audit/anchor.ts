import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto'
import type { IssuanceHorizon, IssuanceHorizons } from '../revocation/revocation.ts'

/**
 * Where a previous full check of the chain ended, so the next start-up need not hash every record again.
 * Stored in the database beside the chain, so it is sealed with a MAC under a key the database does not
 * hold (derived from the broker's signing key): someone who can run SQL can delete or replay an anchor,
 * which only makes the next check longer, but cannot forge one.
 */
export interface ChainAnchor {
  /** The chain was verified from its first record up to this one. */
  seq: number
  hash: string
  /** The lowest seq in the log then. After a prune the anchor is not used (the prefix changed). */
  firstSeq: number
  /**
   * Every record up to `seq` whose body states revocations, as [seq, hash]. Re-checked one by one at
   * start-up: a record retyped, edited or deleted since then is caught without reading the rest.
   */
  evidence: Array<[number, string]>
  /**
   * The issuance horizons as the table held them (never lower than an earlier anchor's). They only ever
   * grow, and they size every later revocation's `until`: a table found lower was lowered by hand.
   * Absent in anchors of earlier versions.
   */
  horizons?: IssuanceHorizons
  /**
   * Where MACs began (record_mac.ts), once a check saw it. A check resuming from the anchor reads none of
   * the records below it, so without this it could not tell that a record appended since needs a MAC.
   * Absent in anchors of earlier versions and of logs written before MACs.
   */
  macFrom?: number
}

/**
 * Where a copy of the sealed anchor is kept outside the database (a file on the broker's host). The
 * database's own can be deleted by whoever writes the database, which turns the checks that need an anchor
 * (records cut off the end, a chain rewritten below it) off; the copy keeps them on for an insider who can
 * write the database but not the broker's host.
 */
export interface AnchorCopy {
  read(): Promise<string | undefined>
  write(sealed: string): Promise<void>
}

const VERSION = 'a1'
/** A sealed anchor: version, hex MAC, JSON body (sealAnchor). */
const SEALED = /^a1\.([0-9a-f]{64})\.(.*)$/s

/** Derives the anchor MAC key, one-way, from a secret the broker already keeps outside the database. */
export function anchorKeyFrom(secret: KeyObject): Buffer {
  return createHmac('sha256', secret).update('condor-token-broker audit anchor').digest()
}

export function sealAnchor(anchor: ChainAnchor, key: Buffer): string {
  const body = JSON.stringify(anchor)
  return `${VERSION}.${mac(body, key)}.${body}`
}

/** The anchor, or undefined when absent, malformed or not sealed with `key` (then: verify everything). */
export function openAnchor(text: string | undefined, key: Buffer): ChainAnchor | undefined {
  if (text === undefined) return undefined
  const m = SEALED.exec(text)
  if (!m || !timingSafeEqual(Buffer.from(m[1]!, 'hex'), Buffer.from(mac(m[2]!, key), 'hex'))) return undefined
  try {
    const a = JSON.parse(m[2]!) as ChainAnchor
    const int = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0
    if (!int(a.seq) || typeof a.hash !== 'string' || !int(a.firstSeq) || !Array.isArray(a.evidence)) return undefined
    if (!a.evidence.every((e) => Array.isArray(e) && int(e[0]) && typeof e[1] === 'string')) return undefined
    const horizon = (h: unknown) => typeof h === 'object' && h !== null && int((h as IssuanceHorizon).exp) && int((h as IssuanceHorizon).lifetime)
    if (a.horizons !== undefined && !(horizon(a.horizons.token) && horizon(a.horizons.certificate))) return undefined
    if (a.macFrom !== undefined && !(int(a.macFrom) && a.macFrom >= 1)) return undefined
    return a
  } catch {
    return undefined
  }
}

/**
 * What a stored anchor is to a reader holding `key`, for a check that reports each anchor (`audit verify`):
 * the anchor, or why there is none to compare with. An anchor that is well-formed but whose seal does not
 * verify was sealed under another key (the IDTOKEN key changed since); anything else is no anchor at all.
 */
export type AnchorReading = { anchor: ChainAnchor } | { absent: true } | { otherKey: true } | { unreadable: string }

export function readSealedAnchor(text: string | undefined, key: Buffer): AnchorReading {
  if (text === undefined) return { absent: true }
  const anchor = openAnchor(text, key)
  if (anchor) return { anchor }
  const m = SEALED.exec(text)
  let sealedElsewhere = false
  try { sealedElsewhere = m !== null && typeof JSON.parse(m[2]!) === 'object' } catch { /* not JSON: not an anchor */ }
  return sealedElsewhere ? { otherKey: true } : { unreadable: 'not a sealed anchor' }
}

function mac(body: string, key: Buffer): string {
  return createHmac('sha256', key).update(`${VERSION}\n${body}`).digest('hex')
}
