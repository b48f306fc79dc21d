import type { KeyObject } from 'node:crypto'
import { InvalidRequest, InvalidScope } from '../errors.ts'
import { newJti } from '../lib/jti.ts'
import { quote } from '../lib/quote.ts'
import { parseAuthzLevel } from './authz.ts'
import { b64url, signAsymmetric, type AsymmetricAlg } from './jws.ts'

/** An asymmetric signing key prepared once: private key object, public key object, RFC 7638 kid. */
export interface AsymmetricKey {
  readonly kid: string
  readonly alg: AsymmetricAlg
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  /** Epoch seconds the key was made (its keyring entry), when known: for its age on /metrics. */
  readonly created?: number
}

/** `scitokens2` emits `ver: scitoken:2.0`; `wlcg` emits `wlcg.ver: "1.0"`. SciTokens 1.0 is never emitted. */
export type TokenProfile = 'scitokens2' | 'wlcg'

export interface SciTokenClaims {
  readonly iss: string
  readonly sub: string
  readonly aud: string | readonly string[]
  readonly scope: string
  readonly iat: number
  readonly nbf: number
  readonly exp: number
  readonly jti: string
  readonly ver?: 'scitoken:2.0'
  readonly 'wlcg.ver'?: '1.0'
}

export interface SciTokenRequest {
  issuer: string
  subject: string
  audience: readonly string[]
  scopes: readonly string[]
  lifetimeSeconds: number
  now: number
  profile: TokenProfile
  jti?: string
}

// WLCG §2.1 recommends back-dating nbf by about 60 s to absorb verifier clock skew.
const NBF_BACKDATE_SECONDS = 60

/**
 * Builds SciTokens 2.0 or WLCG 1.0 claims. `iss` must be https (scitokens-cpp refuses anything else) and
 * `aud` is mandatory in both profiles.
 * @see docs/htcondor-tokens.md §5.2, §5.8; docs/iam-and-wlcg.md §2
 */
export function buildSciTokenClaims(req: SciTokenRequest): SciTokenClaims {
  if (!req.issuer.startsWith('https://')) throw new InvalidRequest('the SciToken issuer must be an https URL')
  if (req.subject.length === 0 || req.subject.length > 255 || /[^\x20-\x7e]/.test(req.subject)) {
    throw new InvalidRequest('sub must be 1 to 255 printable ASCII characters')
  }
  if (req.audience.length === 0) throw new InvalidRequest('a SciToken needs at least one audience')
  for (const a of req.audience) {
    if (a.length === 0 || /\s|[^\x21-\x7e]/.test(a)) throw new InvalidRequest(`audience ${quote(a)} is not a valid URI`)
  }
  const scope = normaliseScopes(req.scopes)
  if (!Number.isSafeInteger(req.lifetimeSeconds) || req.lifetimeSeconds <= 0) {
    throw new InvalidRequest('lifetime must be a positive whole number of seconds')
  }
  const base = {
    iss: req.issuer,
    sub: req.subject,
    aud: req.audience.length === 1 ? req.audience[0]! : [...req.audience],
    scope,
    iat: req.now,
    nbf: req.now - NBF_BACKDATE_SECONDS,
    exp: req.now + req.lifetimeSeconds,
    jti: req.jti ?? newJti(req.now),
  }
  return req.profile === 'wlcg' ? { ...base, 'wlcg.ver': '1.0' } : { ...base, ver: 'scitoken:2.0' }
}

/** Validates scope tokens (no empty list, no whitespace inside one, known `condor:/` levels) and de-duplicates. */
export function normaliseScopes(scopes: readonly string[]): string {
  const out: string[] = []
  for (const x of scopes) {
    for (const s of x.split(' ')) {
      if (s.length === 0) continue
      if (/[^\x21-\x7e]/.test(s) || s.includes('"') || s.includes('\\')) throw new InvalidScope(`scope ${quote(s)} is not valid`)
      const v = /^condor:\//i.test(s) ? `condor:/${parseAuthzLevel(s)}` : s
      if (!out.includes(v)) out.push(v)
    }
  }
  if (out.length === 0) throw new InvalidScope('at least one scope is required: HTCondor grants nothing to a SciToken without one')
  return out.join(' ')
}

/**
 * Signs SciToken/WLCG claims with ES256 or RS256 under the key's RFC 7638 thumbprint `kid`.
 * @see docs/htcondor-tokens.md §5.8
 */
export function mintSciToken(claims: SciTokenClaims, key: AsymmetricKey): string {
  const signingInput = `${encodedHeaderOf(key)}.${b64url(JSON.stringify(claims))}`
  return `${signingInput}.${signAsymmetric(key.alg, signingInput, key.privateKey)}`
}

// The header is fixed per key: encoded once, not per token. Keyed by the key object, which a key reload
// replaces, so a new key (or a test's) never meets an old key's header.
const encodedHeaders = new WeakMap<AsymmetricKey, string>()

function encodedHeaderOf(key: AsymmetricKey): string {
  let header = encodedHeaders.get(key)
  if (header === undefined) {
    header = b64url(JSON.stringify({ alg: key.alg, kid: key.kid, typ: 'JWT' }))
    encodedHeaders.set(key, header)
  }
  return header
}
