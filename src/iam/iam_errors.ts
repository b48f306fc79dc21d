import { ClientError, ResponseBodyError, WWWAuthenticateChallengeError } from 'openid-client'
import { AccessDenied, BrokerError, InvalidGrant, InvalidRequest, InvalidScope, TemporarilyUnavailable } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'

/**
 * Maps a failure talking to IAM onto the broker's error vocabulary. Only errors the *caller* can fix
 * become 4xx; everything about IAM's health or the broker's own registration at IAM becomes
 * `temporarily_unavailable` (503, docs/iam-and-wlcg.md §3.4), with the detail in the log, never on the wire.
 * IAM's own `error_description` is relayed only for `invalid_grant`/`invalid_scope`, trimmed and
 * stripped of anything but printable ASCII, since it is text from another system.
 */
export function mapIamError(err: unknown, what: string, issuer: string, log: Logger): BrokerError {
  if (err instanceof BrokerError) return err
  if (err instanceof ResponseBodyError) {
    const desc = safeText(err.error_description)
    if (err.status >= 500) return unavailable(what, issuer, log, err, `HTTP ${err.status}`)
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
        return unavailable(what, issuer, log, err, `IAM error ${safeText(err.error)}`)
    }
  }
  if (err instanceof WWWAuthenticateChallengeError) return unavailable(what, issuer, log, err, `HTTP ${err.status} challenge`)
  if (err instanceof ClientError) return unavailable(what, issuer, log, err, err.code ?? 'client error')
  if (err instanceof TypeError) return unavailable(what, issuer, log, err, 'network error')
  if (err instanceof DOMException && (err.name === 'TimeoutError' || err.name === 'AbortError')) return unavailable(what, issuer, log, err, 'timeout')
  return unavailable(what, issuer, log, err, 'unexpected error')
}

/** A 503 for the caller; the cause (without tokens: library errors carry URLs and codes) goes to the log. */
export function unavailable(what: string, issuer: string, log: Logger, err: unknown, reason: string): TemporarilyUnavailable {
  log.warn('IAM unavailable', { what, issuer, reason, err: err instanceof Error ? err : undefined })
  return new TemporarilyUnavailable(`IAM could not be reached or answered badly (${what}); try again later`, { cause: err })
}

function safeText(s: unknown): string {
  if (typeof s !== 'string') return ''
  return s.replace(/[^\x20-\x7e]/g, '').slice(0, 200)
}
