import { createSecretKey, type KeyObject } from 'node:crypto'
import { deriveIdTokenKey } from '../keys/condor_key_file.ts'
import { condorScope, type AuthzLevel } from './authz.ts'
import { canonicalJson, type ClaimValue } from './canonical_json.ts'
import { b64url, hs256 } from './jws.ts'
import { InvalidRequest } from '../errors.ts'
import { newJti } from '../lib/jti.ts'
import { quote } from '../lib/quote.ts'

/** A signing key for IDTOKENs, derived and imported once at start-up (the hot path only HMACs). */
export interface IdTokenKey {
  readonly kid: string
  readonly hmac: KeyObject
  /** base64url of `{"alg":"HS256","kid":…}`, fixed per key. */
  readonly encodedHeader: string
}

/** Prepares an IDTOKEN signing key from a HTCondor key file's raw (scrambled) bytes. */
export function prepareIdTokenKey(kid: string, fileBytes: Uint8Array): IdTokenKey {
  const hmac = createSecretKey(deriveIdTokenKey(fileBytes, kid))
  // Header keys are already in sorted order, matching condor_token_create (no typ).
  const encodedHeader = b64url(canonicalJson({ alg: 'HS256', kid }))
  return { kid, hmac, encodedHeader }
}

/** The payload of an HTCondor IDTOKEN. `exp` is mandatory here although HTCondor treats it as optional. */
export interface IdTokenClaims {
  readonly iss: string
  readonly sub: string
  readonly iat: number
  readonly exp: number
  readonly jti: string
  readonly scope?: string
  /** Extra scalar claims (e.g. `project`, revocation generation); visible to SEC_TOKEN_REVOCATION_EXPR. */
  readonly [extra: string]: ClaimValue | undefined
}

export interface IdTokenRequest {
  trustDomain: string
  subject: string
  authz: readonly AuthzLevel[]
  lifetimeSeconds: number
  now: number
  jti?: string
  extra?: Readonly<Record<string, string | number>>
}

/**
 * Builds IDTOKEN claims, refusing what HTCondor would mangle or what would be over-broad.
 * @see docs/htcondor-tokens.md §1.3, §3.4
 */
export function buildIdTokenClaims(req: IdTokenRequest): IdTokenClaims {
  assertTrustDomain(req.trustDomain)
  assertIdentity(req.subject)
  if (req.authz.length === 0) {
    throw new InvalidRequest('an IDTOKEN without authorization levels is unrestricted; name at least one level')
  }
  if (!Number.isSafeInteger(req.lifetimeSeconds) || req.lifetimeSeconds <= 0) {
    throw new InvalidRequest('lifetime must be a positive whole number of seconds')
  }
  const claims: Record<string, ClaimValue> = { ...(req.extra ?? {}) }
  claims.iss = req.trustDomain
  claims.sub = req.subject
  claims.iat = req.now
  claims.exp = req.now + req.lifetimeSeconds
  claims.jti = req.jti ?? newJti(req.now)
  claims.scope = condorScope([...new Set(req.authz)])
  return claims as unknown as IdTokenClaims
}

/**
 * Signs IDTOKEN claims exactly as HTCondor does: canonical JSON payload, HS256 with the derived key.
 * @see docs/htcondor-tokens.md §1.2–1.4
 */
export function mintIdToken(claims: IdTokenClaims, key: IdTokenKey): string {
  const signingInput = `${key.encodedHeader}.${b64url(canonicalJson(claims))}`
  return `${signingInput}.${hs256(signingInput, key.hmac)}`
}

/** TRUST_DOMAIN must be non-empty without space, comma or tab (condor_token_create refuses them since 10.x). */
export function assertTrustDomain(td: string): void {
  if (td.length === 0 || /[ ,\t]/.test(td) || /[^\x21-\x7e]/.test(td)) {
    throw new InvalidRequest(`trust domain ${quote(td)} is invalid: it must be non-empty printable ASCII without space, comma or tab`)
  }
}

/** HTCondor takes `sub` verbatim and splits it at the last '@' into user and domain. */
export function assertIdentity(sub: string): void {
  const at = sub.lastIndexOf('@')
  if (at <= 0 || at === sub.length - 1 || /[^\x21-\x7e]/.test(sub)) {
    throw new InvalidRequest(`identity ${quote(sub)} must have the form user@domain in printable ASCII`)
  }
}
