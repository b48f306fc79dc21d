import { hs256Valid, decodeCompact, verifyAsymmetric } from './jws.ts'
import type { IdTokenKey } from './idtoken.ts'
import type { AsymmetricKey } from './scitoken.ts'

/**
 * SPIRE's rule: check what we just signed before it leaves. Catches a wrong key, a serialisation that
 * would not round-trip, or claims that differ from what was decided. Throws TypeError: this is our bug.
 */
export function verifyMintedIdToken(token: string, key: IdTokenKey, expected: { sub: string; exp: number; jti: string }): void {
  // The header is fixed per key, so comparing its encoded form is the whole header check (hot path).
  const dot = token.lastIndexOf('.')
  if (!token.startsWith(`${key.encodedHeader}.`) || dot <= key.encodedHeader.length) throw new TypeError('minted IDTOKEN has a malformed header')
  const signingInput = token.slice(0, dot)
  if (!hs256Valid(signingInput, token.slice(dot + 1), key.hmac)) throw new TypeError('minted IDTOKEN does not verify with its key')
  const payload = JSON.parse(Buffer.from(signingInput.slice(key.encodedHeader.length + 1), 'base64url').toString('utf8')) as Record<string, unknown>
  assertClaims(payload, expected)
}

export function verifyMintedSciToken(token: string, key: AsymmetricKey, expected: { sub: string; exp: number; jti: string }): void {
  const d = decodeCompact(token)
  if (!d || d.header.kid !== key.kid || d.header.alg !== key.alg) throw new TypeError('minted SciToken has a malformed header')
  if (!verifyAsymmetric(key.alg, d.signingInput, d.signature, key.publicKey)) throw new TypeError('minted SciToken does not verify with its public key')
  assertClaims(d.payload, expected)
}

function assertClaims(payload: Record<string, unknown>, expected: { sub: string; exp: number; jti: string }): void {
  if (payload.sub !== expected.sub || payload.exp !== expected.exp || payload.jti !== expected.jti) {
    throw new TypeError('minted token claims differ from the decided claims')
  }
}
