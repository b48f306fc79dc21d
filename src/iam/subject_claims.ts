import { InvalidRequest } from '../errors.ts'
import type { VerifiedSubject } from './subject.ts'

/**
 * Checks `wlcg.ver`: required in the WLCG profile, grammar `[0-9]+.[0-9]+`; readers reject an unknown
 * MAJOR and accept a newer MINOR (WLCG Common JWT Profile, docs/iam-and-wlcg.md §2.1).
 */
export function checkWlcgVersion(claims: Readonly<Record<string, unknown>>): void {
  const ver = claims['wlcg.ver']
  if (ver === undefined) throw new InvalidRequest('subject_token is not a WLCG-profile token (no wlcg.ver claim)')
  const m = typeof ver === 'string' ? /^([0-9]+)\.([0-9]+)$/.exec(ver) : null
  if (!m) throw new InvalidRequest('subject_token has a malformed wlcg.ver claim')
  if (m[1] !== '1') throw new InvalidRequest('subject_token has an unsupported WLCG profile major version')
}

function stringArray(claims: Readonly<Record<string, unknown>>, name: string): string[] | undefined {
  const v = claims[name]
  if (v === undefined) return undefined
  if (!Array.isArray(v) || !v.every((g) => typeof g === 'string')) throw new InvalidRequest(`subject_token claim ${name} is malformed`)
  return v as string[]
}

function optionalString(claims: Readonly<Record<string, unknown>>, name: string): string | undefined {
  const v = claims[name]
  if (v === undefined) return undefined
  if (typeof v !== 'string') throw new InvalidRequest(`subject_token claim ${name} is malformed`)
  return v
}

/** Space-delimited `scope` (RFC 8693 §4.2, WLCG), or an array as some issuers send; duplicates dropped. */
export function parseScopeClaim(v: unknown): string[] {
  if (v === undefined) return []
  if (typeof v === 'string') return [...new Set(v.split(' ').filter((s) => s.length > 0))]
  if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return [...new Set(v as string[])]
  throw new InvalidRequest('subject_token claim scope is malformed')
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/**
 * Builds the policy engine's view of a verified caller from claims that already passed signature,
 * issuer and time checks (or introspection). The result is deep-frozen: it is shared from the cache
 * between requests. `sub` is bounded per WLCG (≤255 characters) and must be printable, because identity
 * templates copy it into issued tokens.
 */
export function toVerifiedSubject(iss: string, claims: Record<string, unknown>): VerifiedSubject {
  const sub = claims.sub
  if (typeof sub !== 'string' || sub.length === 0) throw new InvalidRequest('subject_token lacks a sub claim')
  if (sub.length > 255 || !/^[\x20-\x7e]+$/.test(sub)) throw new InvalidRequest('subject_token sub claim is not a printable string of at most 255 characters')
  const exp = claims.exp
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new InvalidRequest('subject_token lacks an exp claim')
  // WLCG profile: wlcg.groups; IAM profile and introspection: groups.
  const groups = stringArray(claims, 'wlcg.groups') ?? stringArray(claims, 'groups') ?? []
  const subject: VerifiedSubject = {
    iss,
    sub,
    groups,
    scopes: parseScopeClaim(claims.scope),
    exp,
    claims,
  }
  const clientId = optionalString(claims, 'client_id')
  if (clientId !== undefined) subject.client_id = clientId
  const jti = optionalString(claims, 'jti')
  if (jti !== undefined) subject.jti = jti
  // Introspection (RFC 7662 §2.2) names it `username`; tokens name it `preferred_username`.
  const username = optionalString(claims, 'preferred_username') ?? optionalString(claims, 'username')
  if (username !== undefined) subject.preferred_username = username
  return deepFreeze(subject)
}
