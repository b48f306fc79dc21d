import { createHash, type KeyObject } from 'node:crypto'
import type { AsymmetricAlg } from '../issuance/jws.ts'

/** A public JWK as published at /jwks. */
export interface PublicJwk {
  kty: 'EC' | 'RSA'
  kid: string
  alg: AsymmetricAlg
  use: 'sig'
  crv?: string
  x?: string
  y?: string
  n?: string
  e?: string
}

/**
 * RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, base64url. Stable across
 * restarts and replicas, so verifiers (scitokens-cpp caches keys up to 4 days) never see a kid change.
 */
export function jwkThumbprint(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' })
  const members = jwk.kty === 'EC'
    ? { crv: jwk.crv, kty: 'EC', x: jwk.x, y: jwk.y }
    : { e: jwk.e, kty: 'RSA', n: jwk.n }
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url')
}

export function publicJwk(publicKey: KeyObject, alg: AsymmetricAlg, kid: string): PublicJwk {
  const jwk = publicKey.export({ format: 'jwk' })
  return jwk.kty === 'EC'
    ? { kty: 'EC', crv: jwk.crv!, x: jwk.x!, y: jwk.y!, kid, alg, use: 'sig' }
    : { kty: 'RSA', n: jwk.n!, e: jwk.e!, kid, alg, use: 'sig' }
}

/** Which algorithm a key object can sign with; refuses curves and types we do not publish. */
export function algForKey(key: KeyObject): AsymmetricAlg {
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256'
  if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) return 'RS256'
  throw new TypeError('signing keys must be EC P-256 (ES256) or RSA of at least 2048 bits (RS256)')
}
