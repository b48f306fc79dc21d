import { createHmac, sign as cryptoSign, verify as cryptoVerify, timingSafeEqual, type KeyObject } from 'node:crypto'

/** JWS algorithms we sign with: HS256 for IDTOKENs, ES256/RS256 for SciTokens and WLCG tokens. */
export type AsymmetricAlg = 'ES256' | 'RS256'

export function b64url(input: string | Uint8Array): string {
  return Buffer.from(input).toString('base64url')
}

/** HMAC-SHA256 over the signing input, with a key object prepared once (no per-call import). */
export function hs256(signingInput: string, key: KeyObject): string {
  return createHmac('sha256', key).update(signingInput).digest('base64url')
}

/** Constant-time check of an HS256 signature. */
export function hs256Valid(signingInput: string, signature: string, key: KeyObject): boolean {
  const expected = createHmac('sha256', key).update(signingInput).digest()
  const given = Buffer.from(signature, 'base64url')
  return given.length === expected.length && timingSafeEqual(given, expected)
}

/** ES256 signatures are raw r‖s (RFC 7518 §3.4), not DER, hence ieee-p1363. */
export function signAsymmetric(alg: AsymmetricAlg, signingInput: string, key: KeyObject): string {
  const data = Buffer.from(signingInput)
  const sig = alg === 'ES256'
    ? cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' })
    : cryptoSign('sha256', data, key)
  return sig.toString('base64url')
}

export function verifyAsymmetric(alg: AsymmetricAlg, signingInput: string, signature: string, key: KeyObject): boolean {
  const data = Buffer.from(signingInput)
  const sig = Buffer.from(signature, 'base64url')
  return alg === 'ES256'
    ? cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig)
    : cryptoVerify('sha256', data, key, sig)
}

/** Splits a compact JWS and decodes header and payload; returns null when it is not one. */
export function decodeCompact(token: string): { header: Record<string, unknown>; payload: Record<string, unknown>; signingInput: string; signature: string } | null {
  const parts = token.split('.')
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p))) return null
  try {
    const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as unknown
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown
    if (!isObject(header) || !isObject(payload)) return null
    return { header, payload, signingInput: `${parts[0]}.${parts[1]}`, signature: parts[2]! }
  } catch {
    return null
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
