/** Claim values a flat JWT payload may hold in our tokens. */
export type ClaimValue = string | number | boolean | readonly string[]
/** Undefined members are omitted, as JSON.stringify does. */
export type Claims = Readonly<Record<string, ClaimValue | undefined>>

// Printable ASCII only: jwt-cpp/picojson round-trips these byte for byte.
const UNSAFE = /[^\x20-\x7e]/

/**
 * Serialises claims the way `condor_token_create` does (picojson): keys sorted, no whitespace, plain
 * integers, and `/` escaped as `\/`. Golden tests depend on this exact byte sequence.
 * @see docs/htcondor-tokens.md §1.4
 */
export function canonicalJson(claims: Claims): string {
  const keys = Object.keys(claims).sort()
  const sorted: Record<string, ClaimValue> = {}
  for (const k of keys) {
    const v = claims[k]
    if (v === undefined) continue
    if (UNSAFE.test(k)) throw new TypeError(`claim name ${JSON.stringify(k)} is not printable ASCII`)
    if (typeof v === 'string') {
      if (UNSAFE.test(v)) throw new TypeError(`claim "${k}" contains a control or non-ASCII character`)
    } else if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new TypeError(`claim "${k}" must be an integer`)
    } else if (Array.isArray(v)) {
      for (const s of v) if (typeof s !== 'string' || UNSAFE.test(s)) throw new TypeError(`claim "${k}" has a non-ASCII entry`)
    }
    sorted[k] = v
  }
  return JSON.stringify(sorted).replaceAll('/', '\\/')
}
