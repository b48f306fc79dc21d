/**
 * What a secret looks like, so a template or an inputs file that carries one is refused before anything
 * is requested: templates, inputs and plans are stored and shown freely; bundles are the only place a
 * secret may land, and the broker puts it there.
 */

/** A name ending in secret, password, passwd, token, credential or (private) key, unless it ends in _ref. */
export function secretLookingName(name: string): boolean {
  if (/_ref$/.test(name)) return false
  return /(secret|password|passwd|token|credential|private_key|key)$/i.test(name)
}

const JWT = /^eyJ[\w-]*\.[\w-]*\./
const PEM = /-----BEGIN [A-Z0-9 ]*-----/
const BEARER = /^Bearer\s+\S/i
/** An enrolment credential (the broker's own format) is a secret too. */
const ENROLMENT = /^ctbpe1\./

/** Why a value looks like a secret (for the message), or undefined. Looks into lists and maps. */
export function secretLookingValue(v: unknown, depth = 0): string | undefined {
  if (depth > 16) return undefined
  if (typeof v === 'string') {
    const s = v.trim()
    if (JWT.test(s)) return 'a JWT (a token)'
    if (PEM.test(s)) return 'PEM (a key or certificate)'
    if (BEARER.test(s)) return 'a bearer header'
    if (ENROLMENT.test(s)) return 'a pilot enrolment credential'
    return undefined
  }
  if (Array.isArray(v)) {
    for (const x of v) { const why = secretLookingValue(x, depth + 1); if (why) return why }
    return undefined
  }
  if (v !== null && typeof v === 'object') {
    for (const x of Object.values(v)) { const why = secretLookingValue(x, depth + 1); if (why) return why }
  }
  return undefined
}
