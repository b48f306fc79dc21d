import { hs256Valid, decodeCompact, verifyAsymmetric } from './jws.ts'
import type { IdTokenKey } from './idtoken.ts'
import type { AsymmetricKey } from './scitoken.ts'

/**
 * SPIRE's rule: check what we just signed before it leaves. Catches a wrong key, a serialisation that
 * would not round-trip, or claims that differ from what was decided. Throws TypeError: this is our bug.
 */
export function verifyMintedIdToken(token: string, key: IdTokenKey, expected: { sub: string; exp: number; jti: string }): void {
  const d = decodeCompact(token)
  if (!d || d.header.kid !== key.kid || d.header.alg !== 'HS256') throw new TypeError('minted IDTOKEN has a malformed header')
  if (!hs256Valid(d.signingInput, d.signature, key.hmac)) throw new TypeError('minted IDTOKEN does not verify with its key')
  assertClaims(d.payload, expected)
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
