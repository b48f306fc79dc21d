import { decodeJwt } from 'jose'
import { genericGrantRequest, refreshTokenGrant, ResponseBodyError, tokenRevocation, type Configuration } from 'openid-client'
import { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE } from '../contract/token_exchange.ts'
import { InvalidGrant, InvalidScope, InvalidTarget, TemporarilyUnavailable } from '../errors.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import { SerialByKey } from '../lib/keyed_promises.ts'
import type { IamDiscovery, TrustedIssuer } from './discovery.ts'
import { mapIamError } from './iam_errors.ts'
import type { RefreshTokenStore, StoredRefreshToken } from './refresh_token_store.ts'
import type { VerifiedSubject } from './subject.ts'
import { parseScopeClaim } from './subject_claims.ts'

export interface OutboundExchangeRequest {
  /** The caller's IAM access token; IAM only exchanges tokens it issued and still holds (§1.4). */
  subjectToken: string
  /** The verified caller; its `iss` selects the IAM to ask. */
  subject: VerifiedSubject
  /** Scopes to ask for, at least one. Always sent: IAM refuses an exchange without scope (§1.4). */
  scopes: string[]
  /** Audience of the narrowed token; sent as one space-separated `audience`, which IAM splits (§1.4). */
  audience: string[]
  /**
   * Also obtain a refresh token (`offline_access`) and keep it in the store under `key`, for a later
   * `refresh(key)`. The refresh token is never returned.
   */
  offlineAccess?: { key: string }
  /** Requested lifetime in seconds (IAM ≥ 1.13 `expires_in`); IAM caps it at the broker client's setting. */
  lifetime?: number
}

export interface RefreshRequest {
  /** Narrower scopes than the stored grant; default: all of them. Always sent. */
  scopes?: string[]
  audience?: string[]
}

/** An IAM access token obtained by the broker as its own client. */
export interface ExchangedAccessToken {
  accessToken: string
  /** What we relay as `issued_token_type`: IAM's `…:jwt` label is for an access token (§1.4). */
  issuedTokenType: typeof TOKEN_TYPE.accessToken
  /** IAM's `expires_in`, if sent. Exchanged tokens live as long as the broker client's AT lifetime (§1.4). */
  expiresIn?: number
  /** Granted scopes: equal to the requested ones (a short-changed answer is refused). */
  scopes: string[]
  audience: string[]
  /** True when a (possibly rotated) refresh token was stored. */
  refreshTokenStored: boolean
}

export interface OutboundExchangeDeps {
  discovery: IamDiscovery
  store: RefreshTokenStore
  clock: Clock
  log: Logger
}

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/**
 * The broker as its own IAM client (docs/iam-and-wlcg.md §1.3–§1.4): RFC 8693 token exchange
 * for audience-narrowed access tokens and the refresh-token grant, through openid-client with the broker's
 * client authentication (client_secret_basic or private_key_jwt).
 *
 * IAM drops scopes its policies refuse without an error, so the returned `scope` is always compared with
 * the request and a short-changed result is refused (InvalidScope naming the dropped scopes), as is a
 * result with scopes or an audience nobody asked for. IAM's `invalid_grant` is relayed as InvalidGrant;
 * timeouts, 5xx and the broker's own registration problems are TemporarilyUnavailable.
 */
export class IamTokenExchanger {
  readonly #deps: OutboundExchangeDeps
  readonly #locks = new SerialByKey()

  constructor(deps: OutboundExchangeDeps) {
    this.#deps = deps
  }

  /** RFC 8693 §2.1 exchange at the subject token's IAM. */
  async exchange(req: OutboundExchangeRequest): Promise<ExchangedAccessToken> {
    const issuer = this.#clientIssuer(req.subject.iss)
    checkScopes(req.scopes)
    if (req.scopes.includes('offline_access') && !req.offlineAccess) {
      throw new TypeError('offline_access needs offlineAccess.key: a refresh token must be kept, never dropped')
    }
    const requested = req.offlineAccess ? [...new Set([...req.scopes, 'offline_access'])] : [...new Set(req.scopes)]
    const params: Record<string, string> = {
      subject_token: req.subjectToken,
      // IAM never reads these two (§1.4); RFC 8693 §2.1 requires the first, and they document intent.
      subject_token_type: TOKEN_TYPE.accessToken,
      requested_token_type: TOKEN_TYPE.accessToken,
      scope: requested.join(' '),
    }
    if (req.audience.length > 0) params.audience = req.audience.join(' ')
    if (req.lifetime !== undefined) params.expires_in = String(Math.floor(req.lifetime))

    const configuration = await this.#deps.discovery.configuration(issuer.config.issuer)
    let r: Awaited<ReturnType<typeof genericGrantRequest>>
    try {
      r = await genericGrantRequest(configuration, GRANT_TYPE_TOKEN_EXCHANGE, params)
    } catch (err) {
      throw mapIamError(err, 'token exchange', issuer.config.issuer, this.#deps.log, configuration.serverMetadata().token_endpoint)
    }
    const granted = grantedScopes(r.scope, r.access_token, requested)
    try {
      if (req.offlineAccess && !r.refresh_token) {
        throw new InvalidScope('IAM did not grant: offline_access (no refresh token was issued)')
      }
      checkGranted(requested, granted)
      checkAudience(r.access_token, req.audience)
    } catch (err) {
      if (r.refresh_token) this.#revokeQuietly(configuration, r.refresh_token, issuer.config.issuer)
      throw err
    }
    let stored = false
    if (req.offlineAccess && r.refresh_token) {
      await this.#deps.store.put(req.offlineAccess.key, {
        refreshToken: r.refresh_token,
        issuer: issuer.config.issuer,
        subject: req.subject.sub,
        clientId: issuer.credentials.clientId,
        scopes: granted,
        audience: req.audience,
        obtainedAt: this.#deps.clock.now(),
      })
      stored = true
    } else if (r.refresh_token) {
      // Not asked for; not kept. Revoke it so it does not linger at IAM (cf. IAM #847).
      this.#revokeQuietly(configuration, r.refresh_token, issuer.config.issuer)
    }
    return result(r.access_token, r.expires_in, granted, req.audience, stored)
  }

  /**
   * Refresh-token grant (RFC 6749 §6) with the refresh token stored under `key`. A rotated refresh token
   * is handed to the store before the access token is returned (§1.4: the old one may be single-use), which
   * stores it or holds it while it retries the write (RefreshTokenStore.put). Refreshes of
   * one key are serialised, so two concurrent callers never both spend the same single-use token.
   */
  refresh(key: string, req: RefreshRequest = {}): Promise<ExchangedAccessToken> {
    return this.#locks.run(key, () => this.#refresh(key, req))
  }

  async #refresh(key: string, req: RefreshRequest, retried = false): Promise<ExchangedAccessToken> {
    const rec = await this.#deps.store.get(key)
    if (!rec) throw new InvalidGrant('no IAM refresh token is held for this credential')
    const issuer = this.#deps.discovery.issuer(rec.issuer)
    if (!issuer || issuer.credentials.method === 'none') throw new InvalidGrant('the IAM that issued this refresh token is no longer trusted')
    const scopes = req.scopes ?? rec.scopes
    checkScopes(scopes)
    const params: Record<string, string> = { scope: scopes.join(' ') }
    const audience = req.audience ?? rec.audience
    if (audience.length > 0) params.audience = audience.join(' ')

    const configuration = await this.#deps.discovery.configuration(rec.issuer)
    let r: Awaited<ReturnType<typeof refreshTokenGrant>>
    try {
      r = await refreshTokenGrant(configuration, rec.refreshToken, params)
    } catch (err) {
      if (err instanceof ResponseBodyError && err.error === 'invalid_grant') {
        // Expired or revoked: forget it, unless another refresh (another replica) already spent it and
        // stored the rotated one; then that one is tried, once. If that one was spent elsewhere too, the
        // store kept the credential: IAM's answer then is no refusal of it (invalid_grant would tell the
        // caller it is revoked), only a busy credential to ask about again.
        if (!(await this.#deps.store.delete(key, rec.refreshToken))) {
          if (!retried) return this.#refresh(key, req, true)
          throw new TemporarilyUnavailable('the stored refresh token was rotated elsewhere twice while IAM was asked; ask again', { retryAfter: 1 })
        }
      }
      throw mapIamError(err, 'refresh', rec.issuer, this.#deps.log, configuration.serverMetadata().token_endpoint)
    }
    let stored = false
    if (r.refresh_token && r.refresh_token !== rec.refreshToken) {
      const next: StoredRefreshToken = { ...rec, refreshToken: r.refresh_token, obtainedAt: this.#deps.clock.now() }
      await this.#deps.store.put(key, next)
      stored = true
    }
    const granted = grantedScopes(r.scope, r.access_token, scopes)
    checkGranted(scopes, granted)
    checkAudience(r.access_token, audience)
    return result(r.access_token, r.expires_in, granted, audience, stored)
  }

  /** The trusted issuer of a verified subject, which must have a broker client configured. */
  #clientIssuer(iss: string): TrustedIssuer {
    const issuer = this.#deps.discovery.issuer(iss)
    if (!issuer || issuer.credentials.method === 'none') {
      // RFC 8693 §2.2.2 invalid_target: unable to issue a token for this target.
      throw new InvalidTarget('the broker has no IAM client at the subject token\'s issuer and cannot obtain IAM access tokens from it')
    }
    return issuer
  }

  #revokeQuietly(configuration: Configuration, refreshToken: string, iss: string): void {
    tokenRevocation(configuration, refreshToken, { token_type_hint: 'refresh_token' }).catch((err: unknown) => {
      this.#deps.log.warn('could not revoke an unused IAM refresh token', { issuer: iss, err: err instanceof Error ? err : undefined })
    })
  }
}

function checkScopes(scopes: string[]): void {
  if (scopes.length === 0) throw new TypeError('an IAM exchange needs at least one scope')
  for (const s of scopes) if (!SCOPE_TOKEN.test(s)) throw new TypeError('scope values must be RFC 6749 §3.3 scope-tokens')
}

/**
 * The scopes IAM granted: its `scope` (IAM always sends it); else the access token's own `scope` claim;
 * else, per RFC 6749 §5.1 ("OPTIONAL if identical"), the request.
 */
function grantedScopes(scope: string | undefined, accessToken: string, requested: string[]): string[] {
  if (typeof scope === 'string') return parseScopeClaim(scope)
  try {
    const claim = decodeJwt(accessToken).scope
    if (claim !== undefined) return parseScopeClaim(claim)
  } catch {
    // Opaque access token: nothing more to read.
  }
  return requested
}

/**
 * Refuses a short-changed grant (docs/iam-and-wlcg.md §1.4: IAM drops scopes silently) and a wider one.
 * `wlcg.groups` may be added by IAM whenever a group scope was requested (WLCG §2.2).
 */
function checkGranted(requested: string[], granted: string[]): void {
  const dropped = requested.filter((s) => !granted.includes(s))
  if (dropped.length > 0) throw new InvalidScope(`IAM did not grant: ${dropped.join(' ')}`)
  const groupsAsked = requested.some((s) => s === 'wlcg.groups' || s.startsWith('wlcg.groups:'))
  const extra = granted.filter((s) => !requested.includes(s) && !(groupsAsked && s === 'wlcg.groups'))
  if (extra.length > 0) throw new InvalidScope(`IAM granted scopes that were not requested: ${extra.join(' ')}`)
}

/**
 * A JWT access token must carry exactly the requested audiences: IAM sets `aud` to what was asked, and one
 * more would make the token usable at a service nobody asked for (refused as extra scopes are). An opaque
 * one cannot be checked here.
 */
function checkAudience(accessToken: string, audience: string[]): void {
  if (audience.length === 0) return
  let aud: unknown
  try {
    aud = decodeJwt(accessToken).aud
  } catch {
    return
  }
  const got = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : []
  const missing = audience.filter((a) => !got.includes(a))
  if (missing.length > 0) throw new InvalidTarget('IAM did not narrow the token to the requested audience')
  const extra = got.filter((a) => !audience.includes(a))
  if (extra.length > 0) {
    const shown = extra.slice(0, 3).map((a) => String(a).slice(0, 200)).join(' ')
    throw new InvalidTarget(`IAM aimed the token at audiences that were not requested: ${shown}${extra.length > 3 ? ` (and ${extra.length - 3} more)` : ''}`)
  }
}

function result(accessToken: string, expiresIn: number | undefined, scopes: string[], audience: string[], stored: boolean): ExchangedAccessToken {
  return {
    accessToken,
    issuedTokenType: TOKEN_TYPE.accessToken,
    ...(typeof expiresIn === 'number' ? { expiresIn } : {}),
    scopes,
    audience: [...audience],
    refreshTokenStored: stored,
  }
}
