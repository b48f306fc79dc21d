import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync } from 'node:fs'
import type { MiddlewareHandler } from 'hono'
import { InvalidToken, OperatorError, SlowDown } from '../../errors.ts'
import { readSecretFile, writeSecretFileAtomic } from '../../lib/secure_file.ts'
import type { RequestLimits } from '../../ratelimit/request_limits.ts'
import type { IssuanceBlocks, RevocationChecker } from '../../revocation/revocation_checker.ts'
import { clientAddress } from '../client_address.ts'
import { bearerToken } from '../bearer_token.ts'
import { ADMIN_REALM } from '../oauth_error_response.ts'

/** Who is calling an admin endpoint; goes into audit records as the actor. */
export interface AdminPrincipal {
  /** Stable name for audit, e.g. "bootstrap" or "<iss>,<sub>". */
  id: string
  /** Which authenticator accepted it. */
  via: string
  /** For JWT-based admins: the verified payload, checked against revocations by the middleware. */
  claims?: Readonly<Record<string, unknown>>
}

/**
 * One way to be an admin. Returns null when the bearer token is not valid for this method (the next one
 * is tried); throws only when it cannot decide (e.g. IAM unreachable), which becomes a 503/500.
 * The IAM variant ("IAM token whose policy grants admin") plugs in here: verify the token with the IAM
 * adapter, ask the policy for role `admin`, return `{ id: iss,sub, via: 'iam', claims }`.
 */
export interface AdminAuthenticator {
  authenticate(bearer: string): Promise<AdminPrincipal | null>
  /**
   * True when it decides from what the broker holds, asking nobody (the bootstrap token): tried even for a
   * blocked address, since the address limit guards IAM's calls and a local comparison costs it none.
   */
  local?: boolean
}

declare module 'hono' {
  interface ContextVariableMap {
    admin: AdminPrincipal
  }
}

/**
 * The bootstrap admin token: only its SHA-256 is kept in memory, and a presented token is hashed and
 * compared in constant time (both sides are 32 bytes, so the comparison leaks neither content nor length).
 */
export function bootstrapTokenAuthenticator(tokenSha256: Buffer): AdminAuthenticator {
  if (tokenSha256.length !== 32) throw new TypeError('bootstrap token digest must be 32 bytes')
  return {
    local: true,
    async authenticate(bearer) {
      const given = createHash('sha256').update(bearer).digest()
      return timingSafeEqual(given, tokenSha256) ? { id: 'bootstrap', via: 'bootstrap' } : null
    },
  }
}

/**
 * Reads the bootstrap token file (mode 0600 enforced), creating it with 32 random bytes when missing so a
 * first start is usable; returns the token's SHA-256 and whether it was created.
 */
export function loadBootstrapToken(file: string): { sha256: Buffer; created: boolean } {
  let created = false
  if (!existsSync(file)) {
    writeSecretFileAtomic(file, `${randomBytes(32).toString('base64url')}\n`, { exclusive: true })
    created = true
  }
  const token = readSecretFile(file).toString('utf8').trim()
  if (token.length < 32) throw new OperatorError('EADMINTOKEN', `${file}: the bootstrap admin token must be at least 32 characters`)
  return { sha256: createHash('sha256').update(token).digest(), created }
}

/** How a bearer token becomes an admin: the authenticators, tried in order, and the revocations to honour. */
export interface AdminAuthOptions {
  authenticators: readonly AdminAuthenticator[]
  revocations?: RevocationChecker & IssuanceBlocks
  /**
   * The address limit (docs/rate-limits.md): an IAM authenticator may ask IAM about any bearer it is given
   * (introspection), so a bearer that does not verify counts against its client address as a subject token
   * that does not verify on POST /token does, and a blocked address is refused before IAM is asked.
   */
  limits?: Pick<RequestLimits, 'blockedAddress' | 'noteRefused'> | undefined
}

/**
 * The one admin decision, shared by the admin API and the console: tries each authenticator in order; a
 * principal whose JWT claims are revoked, or who is a revoked caller (its IAM sub or client_id, even in a
 * token IAM minted after the revocation), is refused like a bad token. Throws InvalidToken when refused.
 */
export async function authenticateAdmin(bearer: string, options: AdminAuthOptions, address?: string): Promise<AdminPrincipal> {
  // The block is checked before the first authenticator that may ask IAM, not before the local ones: anyone
  // sharing the operator's address (a NAT, the site's proxy) could otherwise shut the bootstrap token out.
  const refuseBlocked = () => {
    const blocked = options.limits?.blockedAddress(address)
    if (blocked) throw new SlowDown(blocked.description, blocked.retryAfter)
  }
  try {
    return await admitAdmin(bearer, options, refuseBlocked)
  } catch (err) {
    if (err instanceof InvalidToken) options.limits?.noteRefused(address)
    throw err
  }
}

async function admitAdmin(bearer: string, options: AdminAuthOptions, beforeRemote: () => void): Promise<AdminPrincipal> {
  let remoteAsked = false
  for (const a of options.authenticators) {
    if (!a.local && !remoteAsked) {
      beforeRemote()
      remoteAsked = true
    }
    const principal = await a.authenticate(bearer)
    if (!principal) continue
    if (principal.claims && options.revocations && (options.revocations.isRevoked(principal.claims) || blockedCaller(principal.claims, options.revocations))) {
      throw new InvalidToken('the token has been revoked', { presented: true })
    }
    return principal
  }
  throw new InvalidToken('the token is not valid for the admin API', { presented: true })
}

/**
 * Bearer authentication for /v1 admin routes (RFC 6750), deciding with authenticateAdmin. Refusals are
 * thrown as InvalidToken, so the app's one error mapper writes the 401, its challenge and its body.
 * `realm`: the challenge's, the admin API's unless the token asked for is another (the metrics scrape token).
 */
export function adminAuth(options: AdminAuthOptions, realm = ADMIN_REALM): MiddlewareHandler {
  return async (c, next) => {
    c.set('bearerRealm', realm)
    c.set('admin', await authenticateAdmin(bearerToken(c.req.header('authorization')), options, clientAddress(c).clientAddress))
    await next()
  }
}

function blockedCaller(claims: Readonly<Record<string, unknown>>, blocks: IssuanceBlocks): boolean {
  const { iss, sub, client_id: clientId } = claims
  if (typeof sub !== 'string') return true
  return blocks.blockedCaller({ sub, ...(typeof iss === 'string' ? { iss } : {}), ...(typeof clientId === 'string' ? { client_id: clientId } : {}) }) !== undefined
}
