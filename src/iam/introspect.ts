import { tokenIntrospection } from 'openid-client'
import { InvalidRequest } from '../errors.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import type { IamDiscovery, TrustedIssuer } from './discovery.ts'
import { mapIamError } from './iam_errors.ts'
import type { VerifiedSubject } from './subject.ts'
import { toVerifiedSubject } from './subject_claims.ts'

export interface IntrospectionContext {
  discovery: IamDiscovery
  clock: Clock
  clockSkewSeconds: number
  log: Logger
}

/** RFC 7662 `aud` may be a string or an array; true when any configured value is present. */
export function audienceMatches(aud: unknown, accepted: readonly string[]): boolean {
  const values = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : []
  return values.some((a) => accepted.includes(a))
}

/**
 * Asks the issuing IAM whether a token is active (RFC 7662 §2), authenticating as the broker's client
 * (IAM requires it, docs/iam-and-wlcg.md §1.5). Used for opaque tokens and, when configured, for JWTs so that
 * revocation is seen. `active: false` is the caller's problem (invalid_request, RFC 8693 §2.2.2); IAM
 * being unreachable or refusing the broker's credentials is a 503.
 */
export async function introspectSubjectToken(token: string, issuer: TrustedIssuer, ctx: IntrospectionContext): Promise<VerifiedSubject> {
  const iss = issuer.config.issuer
  const configuration = await ctx.discovery.configuration(iss)
  let res: Record<string, unknown>
  try {
    res = await tokenIntrospection(configuration, token, { token_type_hint: 'access_token' }) as Record<string, unknown>
  } catch (err) {
    throw mapIamError(err, 'introspection', iss, ctx.log, configuration.serverMetadata().introspection_endpoint)
  }
  if (res.active !== true) throw new InvalidRequest('subject_token is not active')
  // Exact comparison, as for JWTs (§1.2); an introspection answer without `iss` speaks for the IAM we asked.
  if (res.iss !== undefined && res.iss !== iss) throw new InvalidRequest('subject_token issuer does not match the introspecting IAM')
  const now = ctx.clock.now()
  if (typeof res.exp !== 'number') throw new InvalidRequest('subject_token has no expiry (introspection gave no exp)')
  if (res.exp + ctx.clockSkewSeconds <= now) throw new InvalidRequest('subject_token has expired')
  if (res.nbf !== undefined && typeof res.nbf !== 'number') throw new InvalidRequest('subject_token claim nbf is invalid')
  if (typeof res.nbf === 'number' && res.nbf - ctx.clockSkewSeconds > now) throw new InvalidRequest('subject_token is not yet valid')
  // The JWT path refuses a future iat (verify_subject_token.ts): the same token must get the same verdict
  // whichever way it is checked. iat is optional in RFC 7662 §2.2, but one that is not a number is garbage.
  if (res.iat !== undefined && typeof res.iat !== 'number') throw new InvalidRequest('subject_token claim iat is invalid')
  if (typeof res.iat === 'number' && res.iat - ctx.clockSkewSeconds > now) throw new InvalidRequest('subject_token was issued in the future')
  if (issuer.config.audience && !audienceMatches(res.aud, issuer.config.audience)) {
    throw new InvalidRequest('subject_token audience is not accepted by this broker')
  }
  const claims: Record<string, unknown> = { ...res, iss }
  delete claims.active
  return toVerifiedSubject(iss, claims)
}
