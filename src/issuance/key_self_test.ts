import { OperatorError } from '../errors.ts'
import type { SigningKeys } from '../keys/signing_keys.ts'
import { buildIdTokenClaims, mintIdToken } from './idtoken.ts'
import { buildSciTokenClaims, mintSciToken } from './scitoken.ts'
import { verifyMintedIdToken, verifyMintedSciToken } from './verify_minted.ts'

/**
 * SPIRE's rule, check what you sign, applied once per key when the keys are loaded rather than once per
 * token: the key objects are fixed from then on, so a check after every mint re-ran the same computation
 * on the same key and could not fail (and an ES256 verify, ~70 µs, cost more than the signing). Signs a
 * probe IDTOKEN and SciToken and verifies each with the key as loaded; refuses to start otherwise.
 */
export function assertKeysSign(keys: SigningKeys, issuers: { trustDomain: string; issuer: string }, now: number): void {
  const type = keys.scitoken.privateKey.asymmetricKeyType
  if (type !== (keys.scitoken.alg === 'ES256' ? 'ec' : 'rsa')) {
    // node:crypto would sign ES256 with an RSA key and verify it too; every verifier would refuse the token.
    throw new OperatorError('EKEYSELFTEST', `signing keys failed their self-test: the ${keys.scitoken.alg} SciToken key ${keys.scitoken.kid} is an ${type} key`)
  }
  try {
    const id = buildIdTokenClaims({ trustDomain: issuers.trustDomain, subject: 'key-self-test@broker', authz: ['READ'], lifetimeSeconds: 60, now })
    verifyMintedIdToken(mintIdToken(id, keys.idtoken), keys.idtoken, id)
    const sci = buildSciTokenClaims({ issuer: issuers.issuer, subject: 'key-self-test', audience: [issuers.issuer], scopes: ['compute.read'], lifetimeSeconds: 60, now, profile: 'wlcg' })
    verifyMintedSciToken(mintSciToken(sci, keys.scitoken), keys.scitoken, sci)
  } catch (err) {
    throw new OperatorError('EKEYSELFTEST', `signing keys failed their self-test: ${(err as Error).message}`, { cause: err })
  }
}
