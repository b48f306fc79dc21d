import { createHash } from 'node:crypto'

/**
 * An audit record as an insider with write access to the database would make it, from docs/audit.md alone
 * (not from the broker's code, so the tests that use it check the broker against the documented format).
 */

/** The body as docs/audit.md spells it out: JSON, no whitespace, keys sorted at every level. */
export function canonicalBody(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalBody).join(',')}]`
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonicalBody(o[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

/** The documented hash of the record at `seq`: SHA-256 over seq, the previous record's hash and the body, one per line. */
export function documentedHash(seq: number, prevHash: string, body: string): string {
  return createHash('sha256').update(`${seq}\n${prevHash}\n${body}`).digest('hex')
}
