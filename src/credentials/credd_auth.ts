import { InvalidToken } from '../errors.ts'
import { hs256Valid } from '../issuance/jws.ts'
import type { IdTokenKey } from '../issuance/idtoken.ts'
import type { Clock } from '../lib/clock.ts'
import { CLAIM_ROLE, CLAIM_SITE } from '../revocation/revocation.ts'
import type { RevocationChecker } from '../revocation/revocation_checker.ts'

/** The access point's credd as the token endpoint knows it: from a verified broker-issued IDTOKEN. */
export interface CreddPrincipal {
  /** The IDTOKEN's `sub` (e.g. credd-ap1@aps.pool.example.org). */
  sub: string
  /** Its trust domain (`iss`). */
  iss: string
  /** `ctb_role`: which credds these are is the policy's call (a grant's `fetched_by`), made per request. */
  role: string
  /** `ctb_site`, when the credd's grant binds a site. */
  site?: string
  jti?: string
}

export interface CreddAuthDeps {
  /** The current IDTOKEN key: only tokens this broker signed are accepted. */
  idtokenKey: () => IdTokenKey
  trustDomain: string
  revocations: RevocationChecker
  clock: Clock
}

const MAX_TOKEN_BYTES = 8192

/**
 * Verifies the bearer an access point's credmon presents: an HTCondor IDTOKEN this broker signed (HS256
 * with the pool key it mints IDTOKENs with), for this trust domain, unexpired, carrying a policy
 * role in `ctb_role` (set from policy at issuance, never from a request), and not revoked. Every refusal
 * is InvalidToken (401): the credmon keeps what it has and retries later. Whether this credd may fetch
 * for a given provider and user is the policy's decision (creddMayFetch), taken where both are known.
 */
export function authenticateCredd(bearer: string, deps: CreddAuthDeps): CreddPrincipal {
  const key = deps.idtokenKey()
  if (bearer.length > MAX_TOKEN_BYTES || !bearer.startsWith(`${key.encodedHeader}.`)) throw refused('the bearer is not an IDTOKEN signed by this broker\'s current key')
  const dot = bearer.lastIndexOf('.')
  if (dot <= key.encodedHeader.length + 1 || !hs256Valid(bearer.slice(0, dot), bearer.slice(dot + 1), key.hmac)) {
    throw refused('the bearer is not an IDTOKEN signed by this broker\'s current key')
  }
  let claims: Record<string, unknown>
  try {
    const parsed = JSON.parse(Buffer.from(bearer.slice(key.encodedHeader.length + 1, dot), 'base64url').toString('utf8')) as unknown
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
    claims = parsed as Record<string, unknown>
  } catch {
    throw refused('the IDTOKEN payload is not a JSON object')
  }
  const { iss, sub, exp, jti } = claims
  if (iss !== deps.trustDomain) throw refused('the IDTOKEN is for another trust domain')
  if (typeof sub !== 'string') throw refused('the IDTOKEN has no sub')
  if (typeof exp !== 'number' || exp <= deps.clock.now()) throw refused('the IDTOKEN has expired')
  const role = claims[CLAIM_ROLE]
  if (typeof role !== 'string') throw refused('the IDTOKEN carries no policy role (ctb_role)')
  const site = claims[CLAIM_SITE]
  if (site !== undefined && typeof site !== 'string') throw refused('the IDTOKEN\'s ctb_site is not a string')
  if (deps.revocations.isRevoked(claims)) throw refused('the IDTOKEN has been revoked')
  return { sub, iss, role, ...(site !== undefined ? { site } : {}), ...(typeof jti === 'string' ? { jti } : {}) }
}

function refused(description: string): InvalidToken {
  return new InvalidToken(description, { presented: true })
}
