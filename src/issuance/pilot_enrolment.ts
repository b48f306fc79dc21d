import { createHmac, createSecretKey, type KeyObject } from 'node:crypto'
import { canonicalJson } from './canonical_json.ts'
import type { IdTokenKey } from './idtoken.ts'
import { b64url, hs256, hs256Valid } from './jws.ts'

/**
 * The pilot enrolment credential: `ctbpe1.<payload>.<mac>`, base64url JSON claims MACed with a key derived
 * from the HTCondor signing key. It is self-contained (any replica can check it; only its redemption count
 * lives in the store) and, because the key is derived under its own label, it is never a valid IDTOKEN: a
 * daemon holding the pool key cannot be talked into accepting one.
 * @see docs/pilots.md
 */
const PREFIX = 'ctbpe1.'
const DERIVATION_LABEL = 'condor-token-broker pilot enrolment v1'

/** What a credential states. Every field is set from the policy decision, never from the request. */
export interface EnrolmentClaims {
  /** The credential's id: its redemption count is kept under it, and `revoke --jti` names it. */
  jti: string
  /** The IAM caller that obtained it (`revoke --sub` of that caller stops its redemptions). */
  iss: string
  sub: string
  /** Its IAM client, when its token named one: `revoke --client` of it stops redemptions too. */
  client_id?: string
  /** The rule and role that granted it; redemption re-reads the grant from the policy in force. */
  rule: string
  ctb_role: string
  ctb_gen: number
  ctb_site: string
  /** Pilot tokens (node redemptions) it may yield. */
  count: number
  iat: number
  exp: number
}

/** The MAC key for credentials, derived once from an IDTOKEN key. */
export function enrolmentKeyFrom(idtoken: IdTokenKey): KeyObject {
  return createSecretKey(createHmac('sha256', idtoken.hmac).update(DERIVATION_LABEL).digest())
}

export function mintEnrolmentCredential(claims: EnrolmentClaims, key: KeyObject): string {
  const payload = `${PREFIX}${b64url(canonicalJson(claims as unknown as Record<string, string | number>))}`
  return `${payload}.${hs256(payload, key)}`
}

/** The claims of a credential this broker minted, or undefined for anything else (forged, truncated, another key). */
export function readEnrolmentCredential(token: string, key: KeyObject): EnrolmentClaims | undefined {
  if (!token.startsWith(PREFIX)) return undefined
  const dot = token.lastIndexOf('.')
  if (dot <= PREFIX.length) return undefined
  const signed = token.slice(0, dot)
  if (!hs256Valid(signed, token.slice(dot + 1), key)) return undefined
  let c: Record<string, unknown>
  try {
    c = JSON.parse(Buffer.from(signed.slice(PREFIX.length), 'base64url').toString('utf8')) as Record<string, unknown>
  } catch {
    return undefined
  }
  const str = (k: string) => typeof c[k] === 'string'
  const int = (k: string) => Number.isSafeInteger(c[k])
  if (!['jti', 'iss', 'sub', 'rule', 'ctb_role', 'ctb_site'].every(str) || !['ctb_gen', 'count', 'iat', 'exp'].every(int)) return undefined
  if (c.client_id !== undefined && !str('client_id')) return undefined
  return c as unknown as EnrolmentClaims
}
