import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions, type JWTVerifyResult } from 'jose'
import { BrokerError, InvalidRequest } from '../errors.ts'
import type { Clock } from '../lib/clock.ts'
import { SingleFlight } from '../lib/keyed_promises.ts'
import type { Logger } from '../lib/logger.ts'
import type { IamDiscovery, TrustedIssuer } from './discovery.ts'
import type { IamConfig } from './iam_config.ts'
import type { IamFetch } from './iam_fetch.ts'
import { introspectSubjectToken, type IntrospectionContext } from './introspect.ts'
import { createIssuerKeys } from './issuer_keys.ts'
import type { SubjectTokenVerifier, VerifiedSubject } from './subject.ts'
import { checkWlcgVersion, toVerifiedSubject } from './subject_claims.ts'
import { VerifiedSubjectCache } from './verified_cache.ts'

export interface IamVerifierDeps {
  discovery: IamDiscovery
  /** The fetch for JWKS requests; the same one the discovery uses. */
  fetch: IamFetch
  clock: Clock
  log: Logger
}

/** JWS compact serialisation: three base64url segments (the signature may be empty, e.g. `alg: none`). */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/
/** RFC 6750 §2.1 b64token: what an opaque bearer token may look like. */
const OPAQUE_SHAPE = /^[A-Za-z0-9\-._~+/]+=*$/

/** Claims every IAM profile carries (docs/iam-and-wlcg.md §1.5); `iss` is pinned separately. */
const REQUIRED_CLAIMS = ['sub', 'exp', 'iat', 'jti']

/**
 * Verifies inbound IAM access tokens (docs/iam-and-wlcg.md §1.2, §2.1, §3.1).
 *
 * JWTs: the unverified `iss` selects one trusted issuer by exact string; the header `alg` must be on
 * that issuer's allow-list before any network call (so `alg: none` and HS* never reach a key lookup);
 * then jose `jwtVerify` against the issuer's remote JWKS with `iss` pinned exactly, `aud` if configured,
 * `exp`/`nbf`/`iat` with bounded skew and `jti` required, and `wlcg.ver` for the WLCG profile.
 * Opaque tokens, or every token of an issuer configured with `introspection: always`, go through
 * RFC 7662 introspection.
 *
 * A verified subject is cached under the SHA-256 of the token until its `exp` (introspected ones at
 * most `introspection_cache_seconds`), so the hot path of POST /token is one hash and one map lookup.
 *
 * Errors: anything wrong with the token is InvalidRequest (RFC 8693 §2.2.2; see spec §3.4) with a
 * description that never contains the token; IAM unreachable, slow or answering garbage is
 * TemporarilyUnavailable (503) after a bounded wait.
 */
export class IamSubjectTokenVerifier implements SubjectTokenVerifier {
  readonly #iam: IamConfig
  readonly #deps: IamVerifierDeps
  readonly #cache: VerifiedSubjectCache
  readonly #inflight = new SingleFlight<VerifiedSubject>()
  readonly #keys = new Map<string, { jwksUri: string; keys: JWTVerifyGetKey }>()
  readonly #introspection: IntrospectionContext

  constructor(iam: IamConfig, deps: IamVerifierDeps) {
    this.#iam = iam
    this.#deps = deps
    this.#cache = new VerifiedSubjectCache({ maxEntries: iam.verified_cache_max_entries })
    this.#introspection = { discovery: deps.discovery, clock: deps.clock, clockSkewSeconds: iam.clock_skew_seconds, log: deps.log }
  }

  /** Cache statistics, for tests and metrics. */
  get cacheStats(): { hits: number; misses: number; size: number } {
    return { hits: this.#cache.hits, misses: this.#cache.misses, size: this.#cache.size }
  }

  async verify(token: string): Promise<VerifiedSubject> {
    if (typeof token !== 'string' || token.length === 0) throw new InvalidRequest('subject_token is missing')
    // Bound the work an anonymous caller can cause before anything is parsed or hashed.
    if (token.length > this.#iam.max_token_bytes) throw new InvalidRequest(`subject_token is longer than ${this.#iam.max_token_bytes} bytes`)
    const key = VerifiedSubjectCache.key(token)
    const cached = this.#cache.get(key, this.#deps.clock.now())
    if (cached) return cached
    // Concurrent first requests with the same token share one verification.
    return this.#inflight.run(key, () => this.#verifyUncached(token, key))
  }

  /** Stops the cache's sweep timer. */
  close(): void {
    this.#cache.close()
  }

  async #verifyUncached(token: string, key: string): Promise<VerifiedSubject> {
    let subject: VerifiedSubject
    let ttl: number
    const now = this.#deps.clock.now()
    if (JWT_SHAPE.test(token)) {
      const issuer = this.#selectIssuer(token)
      subject = await this.#verifyJwt(token, issuer)
      ttl = subject.exp - now
      if (issuer.config.introspection === 'always') {
        await introspectSubjectToken(token, issuer, this.#introspection)
        ttl = Math.min(ttl, this.#iam.introspection_cache_seconds)
      }
    } else if (OPAQUE_SHAPE.test(token) && this.#introspectingIssuers().length > 0) {
      subject = await this.#introspectOpaque(token)
      ttl = Math.min(subject.exp - now, this.#iam.introspection_cache_seconds)
    } else {
      throw new InvalidRequest('subject_token is not a well-formed JWT')
    }
    this.#cache.set(key, subject, ttl)
    return subject
  }

  /** The trusted issuer named by the token's (still unverified) `iss`, by exact string (§1.2). */
  #selectIssuer(token: string): TrustedIssuer {
    let header: ReturnType<typeof decodeProtectedHeader>
    let payload: JWTPayload
    try {
      header = decodeProtectedHeader(token)
      payload = decodeJwt(token)
    } catch {
      throw new InvalidRequest('subject_token is not a well-formed JWT')
    }
    // IAM never marks header parameters critical; one we would have to understand is refused before any
    // key lookup, like any other malformed token (quietly: it is the caller's problem, not the broker's).
    if (header.crit !== undefined) throw new InvalidRequest('subject_token has critical header parameters this broker does not support')
    if (typeof payload.iss !== 'string') throw new InvalidRequest('subject_token has no iss claim')
    const issuer = this.#deps.discovery.issuer(payload.iss)
    // The iss value is not echoed: it is caller-controlled text.
    if (!issuer) throw new InvalidRequest('subject_token issuer is not trusted by this broker')
    if (typeof header.alg !== 'string' || !(issuer.config.algorithms as string[]).includes(header.alg)) {
      throw new InvalidRequest(`subject_token must be signed with one of ${issuer.config.algorithms.join(', ')}`)
    }
    return issuer
  }

  async #keysFor(issuer: TrustedIssuer): Promise<JWTVerifyGetKey> {
    const iss = issuer.config.issuer
    const jwksUri = (await this.#deps.discovery.configuration(iss)).serverMetadata().jwks_uri!
    const current = this.#keys.get(iss)
    if (current?.jwksUri === jwksUri) return current.keys
    const keys = createIssuerKeys(jwksUri, {
      issuer: iss,
      fetch: this.#deps.fetch,
      cacheSeconds: this.#iam.jwks_cache_seconds,
      cooldownSeconds: this.#iam.jwks_cooldown_seconds,
      timeoutSeconds: this.#iam.jwks_timeout_seconds,
      maxStaleSeconds: this.#iam.jwks_max_stale_seconds,
      retrySeconds: this.#iam.discovery_retry_seconds,
      log: this.#deps.log,
    })
    this.#keys.set(iss, { jwksUri, keys })
    return keys
  }

  async #verifyJwt(token: string, issuer: TrustedIssuer): Promise<VerifiedSubject> {
    const { config } = issuer
    const keys = await this.#keysFor(issuer)
    const options: JWTVerifyOptions = {
      issuer: config.issuer,
      algorithms: config.algorithms,
      clockTolerance: this.#iam.clock_skew_seconds,
      requiredClaims: REQUIRED_CLAIMS,
      currentDate: new Date(this.#deps.clock.now() * 1000),
      ...(config.audience ? { audience: config.audience } : {}),
    }
    let result: JWTVerifyResult
    try {
      result = await jwtVerify(token, keys, options)
    } catch (err) {
      if (err instanceof joseErrors.JWKSMultipleMatchingKeys) {
        // No `kid` and several candidate keys (e.g. during rotation): try each, as jose documents.
        result = await this.#verifyWithCandidates(token, err, options, config.issuer)
      } else {
        throw this.#mapJoseError(err, config.issuer)
      }
    }
    const claims = result.payload as Record<string, unknown>
    // jose checks iat's type only; a token "issued" in the future is as suspect as one not yet valid.
    if (typeof claims.iat === 'number' && claims.iat - this.#iam.clock_skew_seconds > this.#deps.clock.now()) {
      throw new InvalidRequest('subject_token was issued in the future')
    }
    if (config.profile === 'wlcg') checkWlcgVersion(claims)
    return toVerifiedSubject(config.issuer, claims)
  }

  async #verifyWithCandidates(token: string, multiple: joseErrors.JWKSMultipleMatchingKeys, options: JWTVerifyOptions, iss: string): Promise<JWTVerifyResult> {
    let last: unknown = multiple
    for await (const candidate of multiple as unknown as AsyncIterable<CryptoKey>) {
      try {
        return await jwtVerify(token, candidate, options)
      } catch (err) {
        last = err
        if (!(err instanceof joseErrors.JWSSignatureVerificationFailed)) break
      }
    }
    throw this.#mapJoseError(last, iss)
  }

  #mapJoseError(err: unknown, iss: string): BrokerError {
    if (err instanceof BrokerError) return err
    if (err instanceof joseErrors.JWTExpired) return new InvalidRequest('subject_token has expired')
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      if (err.reason === 'missing') return new InvalidRequest(`subject_token lacks the ${err.claim} claim`)
      switch (err.claim) {
        case 'nbf': return new InvalidRequest('subject_token is not yet valid')
        case 'iss': return new InvalidRequest('subject_token issuer does not match')
        case 'aud': return new InvalidRequest('subject_token audience is not accepted by this broker')
        default: return new InvalidRequest(`subject_token claim ${err.claim} is invalid`)
      }
    }
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new InvalidRequest('subject_token signature is invalid')
    if (err instanceof joseErrors.JWKSNoMatchingKey) return new InvalidRequest('subject_token is signed with a key its issuer does not publish')
    if (err instanceof joseErrors.JWKSMultipleMatchingKeys) return new InvalidRequest('subject_token does not identify its signing key')
    if (err instanceof joseErrors.JOSEAlgNotAllowed) return new InvalidRequest('subject_token is signed with a disallowed algorithm')
    if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return new InvalidRequest('subject_token is not a well-formed JWT')
    if (err instanceof joseErrors.JOSENotSupported) return new InvalidRequest('subject_token uses a JOSE feature this broker does not support')
    // Anything else (a key IAM publishes that WebCrypto cannot use, …) is logged on one line, without a
    // stack (it says nothing about our code); the caller learns only that the token could not be verified.
    const e = err instanceof Error ? err : undefined
    this.#deps.log.warn('subject token verification failed unexpectedly', { issuer: iss, error: e?.name ?? typeof err, code: (e as { code?: unknown } | undefined)?.code, message: e?.message.split('\n')[0] })
    return new InvalidRequest('subject_token could not be verified')
  }

  #introspectingIssuers(): TrustedIssuer[] {
    return this.#deps.discovery.issuers.filter((i) => i.config.introspection !== 'off')
  }

  /**
   * An opaque token carries no `iss`, so nothing says which IAM issued it. It goes to the one issuer that
   * introspects, or to none: asking each IAM in turn would hand one IAM's bearer token to the operators of
   * another (a federation's IAMs are separate organisations), who could then replay it. A 503 when that
   * IAM cannot be asked, as for any IAM outage.
   */
  async #introspectOpaque(token: string): Promise<VerifiedSubject> {
    const issuers = this.#introspectingIssuers()
    if (issuers.length > 1) {
      throw new InvalidRequest(`subject_token is opaque and names no issuer, and ${issuers.length} trusted IAMs introspect: it is sent to none of them (a token must only reach the IAM that issued it); present a JWT access token`)
    }
    return introspectSubjectToken(token, issuers[0]!, this.#introspection)
  }
}
