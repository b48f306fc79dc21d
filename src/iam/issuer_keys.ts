import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, jwksCache, type ExportedJWKSCache, type JWTVerifyGetKey } from 'jose'
import { TemporarilyUnavailable } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import { iamUnavailable } from './iam_errors.ts'
import { classifyIamFailure } from './iam_failure.ts'
import type { IamFetch } from './iam_fetch.ts'

export interface IssuerKeysOptions {
  issuer: string
  fetch: IamFetch
  /** Refresh after this long (WLCG: 6 h). */
  cacheSeconds: number
  /** Minimum gap between refetches forced by an unknown `kid`. */
  cooldownSeconds: number
  timeoutSeconds: number
  /** Use the last good key set this long after it was fetched when IAM cannot be reached (WLCG: 2 d). */
  maxStaleSeconds: number
  /** After a failed fetch with no usable keys, answer 503 without asking IAM for this long. */
  retrySeconds: number
  log: Logger
}

/**
 * An issuer's signing keys for `jwtVerify`: jose's `createRemoteJWKSet` (cache age, cooldown, timeout;
 * an unknown `kid` triggers one refetch, at most once per cooldown, which is how IAM key rotation is
 * picked up), plus what WLCG asks of a key cache and jose leaves out: when a refresh fails, the last
 * good key set keeps working up to `maxStaleSeconds` (docs/iam-and-wlcg.md §2.3), and after a failure IAM is
 * not asked again for a while (the cooldown with stale keys, `retrySeconds` without), so an IAM outage
 * costs one fetch per interval, not one per request.
 *
 * Failures to fetch or parse the key set surface as TemporarilyUnavailable (503); an unknown or
 * ambiguous `kid` surfaces as jose's own error, which the verifier maps to invalid_request.
 */
export function createIssuerKeys(jwksUri: string, o: IssuerKeysOptions): JWTVerifyGetKey {
  const cache: ExportedJWKSCache | Record<string, never> = {}
  const remote = createRemoteJWKSet(new URL(jwksUri), {
    cacheMaxAge: o.cacheSeconds * 1000,
    cooldownDuration: o.cooldownSeconds * 1000,
    timeoutDuration: Math.ceil(o.timeoutSeconds * 1000),
    [customFetch]: o.fetch,
    [jwksCache]: cache,
  })
  let failedAt: number | undefined
  let stale: { uat: number; keys: JWTVerifyGetKey } | undefined

  const staleKeys = (): JWTVerifyGetKey | undefined => {
    const c = cache as Partial<ExportedJWKSCache>
    if (c.uat === undefined || c.jwks === undefined || Date.now() - c.uat > o.maxStaleSeconds * 1000) return undefined
    if (stale?.uat !== c.uat) stale = { uat: c.uat, keys: createLocalJWKSet(c.jwks) }
    return stale.keys
  }

  return async (header, token) => {
    if (failedAt !== undefined) {
      const since = Date.now() - failedAt
      const keys = staleKeys()
      if (keys && since < o.cooldownSeconds * 1000) return keys(header, token)
      // Not logged again: the failure that started the back-off was.
      if (!keys && since < o.retrySeconds * 1000) throw new TemporarilyUnavailable('IAM key set could not be fetched recently; try again later')
    }
    try {
      const key = await remote(header, token)
      failedAt = undefined
      return key
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err
      failedAt = Date.now()
      const keys = staleKeys()
      if (keys) {
        const failure = classifyIamFailure(err)
        o.log.warn(`IAM key set refresh failed: ${jwksUri}: ${failure.cause}; using the last good keys`, { issuer: o.issuer, url: jwksUri, cause: failure.cause, err: err instanceof Error ? err : undefined })
        return keys(header, token)
      }
      throw iamUnavailable('key set', o.issuer, o.log, err, classifyIamFailure(err).cause, jwksUri)
    }
  }
}
