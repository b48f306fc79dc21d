/**
 * Case mapping of ASCII letters only. String.prototype.toUpperCase/toLowerCase follow Unicode, which
 * maps some non-ASCII letters onto ASCII ones ('ſ' → 'S', 'ı' → 'I', Kelvin sign 'K' → 'k'): a
 * case-insensitive check built on them would let such a string pass for an ASCII name (an HTCondor
 * level, a host) that it is not. Everything the broker compares without case is ASCII by definition.
 */
export function asciiUpper(s: string): string {
  return s.replace(/[a-z]+/g, (m) => m.toUpperCase())
}

export function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase())
}
