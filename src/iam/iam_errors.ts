import { ClientError, ResponseBodyError, WWWAuthenticateChallengeError } from 'openid-client'
import { AccessDenied, BrokerError, InvalidGrant, InvalidRequest, InvalidScope, OperatorError, TemporarilyUnavailable } from '../errors.ts'
import { cutTokens } from '../lib/cut_tokens.ts'
import type { Logger } from '../lib/logger.ts'
import { classifyIamFailure } from './iam_failure.ts'

/**
 * Maps a failure talking to IAM onto the broker's error vocabulary. Only errors the *caller* can fix
 * become 4xx; everything about IAM's health or the broker's own registration at IAM becomes
 * `temporarily_unavailable` (503, docs/iam-and-wlcg.md §3.4), with the detail in the log, never on the wire.
 * IAM's own `error_description` is relayed only for `invalid_grant`/`invalid_scope`, trimmed and
 * stripped of anything but printable ASCII, since it is text from another system.
 */
export function mapIamError(err: unknown, what: string, issuer: string, log: Logger, url?: string): BrokerError {
  if (err instanceof BrokerError) return err
  const unavailable = (reason: string) => iamUnavailable(what, issuer, log, err, reason, url)
  if (err instanceof ResponseBodyError) {
    const desc = safeText(err.error_description)
    if (err.status >= 500) return unavailable(`HTTP ${err.status}`)
    switch (err.error) {
      case 'invalid_grant':
        // RFC 6749 §5.2; e.g. an AUP the user must sign again, or a revoked/expired refresh token (§1.4).
        return new InvalidGrant(`IAM refused the grant${desc ? `: ${desc}` : ''}`, { cause: err })
      case 'invalid_scope':
        return new InvalidScope(`IAM refused the requested scope${desc ? `: ${desc}` : ''}`, { cause: err })
      case 'invalid_token':
        // IAM: a subject token it did not issue or no longer holds (§1.4); RFC 8693 §2.2.2 says invalid_request.
        return new InvalidRequest('subject_token was not accepted by IAM', { cause: err })
      case 'access_denied':
        return new AccessDenied(`IAM denied the exchange${desc ? `: ${desc}` : ''}`, { cause: err })
      default:
        // invalid_client, unauthorized_client, unsupported_grant_type, invalid_request: the broker's
        // registration or request is wrong; the caller cannot fix that.
        return unavailable(`IAM error ${safeText(err.error)}`)
    }
  }
  if (err instanceof WWWAuthenticateChallengeError) return unavailable(`HTTP ${err.status} challenge`)
  // openid-client: an unexpected status or content type; the Response is the cause.
  const answered = answeredStatus(err)
  if (answered !== undefined) return unavailable(`HTTP ${answered}`)
  // Transport failures (fetch's TypeError, timeouts, openid-client's wrappers of them) are named by
  // their cause: dns, tls, refused, timeout or the system code.
  return unavailable(classifyIamFailure(err).cause)
}

/**
 * A 503 for the caller; the URL and the cause go to the log as one line (without tokens: library errors
 * carry URLs and codes), so an operator reading `IAM unavailable` knows which endpoint failed and why.
 */
export function iamUnavailable(what: string, issuer: string, log: Logger, err: unknown, reason: string, url?: string): TemporarilyUnavailable {
  const failure = classifyIamFailure(err)
  log.warn(`IAM unavailable: ${what}${url ? ` ${url}` : ''}: ${reason}${failure.detail ? ` (${failure.detail})` : ''}`, {
    what, issuer, ...(url ? { url } : {}), cause: reason, ...(failure.code ? { code: failure.code } : {}), err: err instanceof Error ? err : undefined,
  })
  return new TemporarilyUnavailable(`IAM could not be reached or answered badly (${what}); try again later`, { cause: err })
}

/**
 * A short reason for a failed IAM call, for diagnostics (`iam check`, /readyz): the HTTP status or IAM
 * error for an answer, the transport cause (dns, tls, refused, timeout, code) for no answer, and the
 * operator's problem (issuer mismatch) as such. Unwraps the TemporarilyUnavailable that mapIamError made.
 * `open`: for an answer anyone may read (/readyz needs no token): the operator's problem in the words the
 * API gives a caller, since its message names discovery_url, which may be an address inside the site; the
 * detail is in the log and in `iam check`.
 */
export function iamFailureReason(err: unknown, options: { open?: boolean } = {}): string {
  if (err instanceof TemporarilyUnavailable && err.cause !== undefined) {
    return options.open && err.cause instanceof OperatorError ? err.description : iamFailureReason(err.cause, options)
  }
  if (err instanceof OperatorError) return options.open ? 'the IAM configuration is wrong (see the log)' : err.message
  if (err instanceof ResponseBodyError) return err.status >= 500 ? `HTTP ${err.status}` : `IAM error ${safeText(err.error)} (HTTP ${err.status})`
  if (err instanceof WWWAuthenticateChallengeError) {
    const error = err.cause[0]?.parameters.error
    return error ? `IAM error ${safeText(error)} (HTTP ${err.status})` : `HTTP ${err.status} challenge`
  }
  const answered = answeredStatus(err)
  if (answered !== undefined) return `HTTP ${answered}`
  if (err instanceof BrokerError) return err.description
  return classifyIamFailure(err).cause
}

/**
 * The HTTP status of IAM's answer when openid-client refused it as not an OAuth answer (a proxy's error
 * page, a wrong content type) and left the Response as the error's cause. Read by shape: the broker's IAM
 * client is npm undici (iam_fetch.ts), whose Response is not the global class, so `instanceof Response`
 * never matched in production and operators read OAUTH_RESPONSE_IS_NOT_CONFORM instead of "HTTP 502".
 */
export function answeredStatus(err: unknown): number | undefined {
  if (!(err instanceof ClientError)) return undefined
  const status = (err.cause as { status?: unknown } | undefined)?.status
  return typeof status === 'number' && Number.isInteger(status) && status >= 100 && status <= 599 ? status : undefined
}

/**
 * IAM's text, fit to relay and record: printable ASCII, short, and with anything token-shaped cut out
 * (IAM names the token it refuses): relayed as it came, the broker would hand a user's refresh token to
 * every credmon's log, and the user's own IAM token to the audit store, which keeps every record for years.
 */
function safeText(s: unknown): string {
  if (typeof s !== 'string') return ''
  return cutTokens(s.replace(/[^\x20-\x7e]/g, '')).slice(0, 200)
}
