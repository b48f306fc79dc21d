import type { GoneCredentialState } from './contract/job_credentials.ts'

/**
 * The broker's error vocabulary. The core throws only these for untrusted input (and TypeError for
 * programmer mistakes); the HTTP edge maps them to RFC 6749 §5.2 bodies, the CLI to one-line messages.
 */

/**
 * OAuth 2.0 error codes we emit: RFC 6749 §5.2, RFC 8693 §2.2.2 `invalid_target`, 503's
 * `temporarily_unavailable`, 429's `slow_down` (RFC 8628 §3.5), and RFC 6750 §3.1 `invalid_token` for
 * the admin API's bearer tokens.
 */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'access_denied'
  | 'temporarily_unavailable'
  | 'invalid_token'
  | 'slow_down'

export abstract class BrokerError extends Error {
  abstract readonly error: OAuthErrorCode
  readonly status: 400 | 401 | 403 | 404 | 405 | 429 | 503 = 400
  /** Safe to show the client: becomes `error_description`. Never put secrets or tokens here. */
  readonly description: string

  constructor(description: string, options?: { cause?: unknown }) {
    super(description, options)
    this.name = new.target.name
    this.description = description
  }
}

export class InvalidRequest extends BrokerError { readonly error = 'invalid_request' }
export class InvalidGrant extends BrokerError { readonly error = 'invalid_grant' }
export class InvalidTarget extends BrokerError { readonly error = 'invalid_target' }
export class InvalidScope extends BrokerError { readonly error = 'invalid_scope' }
export class UnauthorizedClient extends BrokerError { readonly error = 'unauthorized_client' }
export class UnsupportedGrantType extends BrokerError { readonly error = 'unsupported_grant_type' }
export class AccessDenied extends BrokerError {
  readonly error = 'access_denied'
  override readonly status = 403
}
/**
 * A job credential that is gone for good (unknown, revoked, or in a form that can no longer be served):
 * still `access_denied`, 403, but the answer says so (the `credential` member of the job-token 403, the
 * wire contract's GoneCredentialState), so a credmon ends the `.top` the credd holds and the user's next
 * submit registers again. Only for the credential itself; a refusal an operator can lift (policy, a
 * revoked identity) is a plain AccessDenied.
 */
export class CredentialGone extends AccessDenied {
  readonly credential: GoneCredentialState
  constructor(credential: GoneCredentialState, description: string, options?: { cause?: unknown }) {
    super(description, options)
    this.credential = credential
  }
}
export class TemporarilyUnavailable extends BrokerError {
  readonly error = 'temporarily_unavailable'
  override readonly status = 503
  /** Seconds the client should wait before retrying: the `Retry-After` header (RFC 9110 §10.2.3). */
  readonly retryAfter: number

  constructor(description: string, options?: { cause?: unknown; retryAfter?: number }) {
    super(description, options)
    this.retryAfter = options?.retryAfter ?? 5
  }
}

/** Seconds a client is asked to wait after an audit store outage: long enough not to hammer a restarting server. */
export const STORE_OUTAGE_RETRY_AFTER_SECONDS = 5

/**
 * The audit store could not commit for an outage (the database unreachable, locked, full or failing; the
 * writer thread gone: storage/store_outage.ts tells which failures those are): 503 temporarily_unavailable
 * (RFC 6749 §4.1.2.1) with Retry-After, the store's error as `cause`. Nothing was issued (fail closed);
 * the client is asked to come back rather than told the broker is broken.
 */
export class AuditStoreUnavailable extends TemporarilyUnavailable {
  /**
   * Whether its log line is written: by the refusal path that names the caller (issuance/unrecordable_refusal.ts),
   * else by whoever answers it (the HTTP error reply), so that each outage a client is told of is in the log once.
   */
  logged = false
  /**
   * Whether the request's refusal is on record all the same: a reused pilot token's refusal commits before
   * the revocation that then meets the outage. Counted from that record (metrics), not again as an outage's.
   */
  refusalRecorded = false
  /** `failed`: what the store could not do, a commit (a request's record) or a read (a CLI command's, a request's lookup). */
  constructor(cause: unknown, failed: 'commit' | 'read' = 'commit') {
    // Shown to the client: says what happened to its request, names nothing of the store (no path, DSN or SQL).
    // A read (an admin or console page, a job token's credential) neither recorded nor meant to: said as a read.
    super(failed === 'commit'
      ? 'the broker cannot record requests right now, so nothing was issued; try again shortly'
      : 'the broker cannot read its store right now, so nothing was issued or changed; try again shortly', { cause, retryAfter: STORE_OUTAGE_RETRY_AFTER_SECONDS })
    // For the log and the CLI's one line (an operator's eyes): what the store said. Never on the wire,
    // where only `description` goes.
    const said = cause instanceof Error ? cause.message : String(cause)
    this.message = failed === 'commit' ? `the audit store cannot commit right now (${said}); nothing was issued` : `the audit store cannot be read right now (${said})`
  }
}

/**
 * A rate limit refused the request: 429 (RFC 6585 §4) with Retry-After. `slow_down` is the code the
 * OAuth registry lists for a token-endpoint client asking too often (RFC 8628 §3.5), which is exactly
 * this; `temporarily_unavailable` stays the broker's own overload (503), so a client can tell "you are
 * too fast" from "we are too busy".
 */
export class SlowDown extends BrokerError {
  readonly error = 'slow_down'
  override readonly status = 429
  /** Whole seconds, at least 1, until the limit lets a request through again: the `Retry-After` header. */
  readonly retryAfter: number

  constructor(description: string, retryAfter: number) {
    super(description)
    this.retryAfter = retryAfter
  }
}

/**
 * The admin API's bearer token is missing, malformed, unknown or revoked (RFC 6750 §3.1). `presented`
 * is false when the request carried no bearer credentials at all: the challenge then names no error.
 */
export class InvalidToken extends BrokerError {
  readonly error = 'invalid_token'
  override readonly status = 401
  readonly presented: boolean
  constructor(description: string, options: { presented: boolean }) {
    super(description)
    this.presented = options.presented
  }
}
/**
 * An Authorization header in the Bearer scheme without exactly one token: RFC 6750 §3.1 invalid_request,
 * 400, with a Bearer challenge naming the error (oauth_error_response.ts).
 */
export class MalformedBearer extends InvalidRequest {}
/** No endpoint at this path: answered in the same error shape as everything else. */
export class NotFound extends BrokerError {
  readonly error = 'invalid_request'
  override readonly status = 404
}
/** The path exists but not for this method: 405 with `Allow` (RFC 9110 §15.5.6), body still `invalid_request`. */
export class MethodNotAllowed extends BrokerError {
  readonly error = 'invalid_request'
  override readonly status = 405
  readonly allow: readonly string[]
  constructor(description: string, allow: readonly string[]) {
    super(description)
    this.allow = allow
  }
}

/**
 * A failure an operator must fix (bad key file, bad config). The CLI prints `message` as one line;
 * the server refuses to start. Never carries secret values.
 */
export class OperatorError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'OperatorError'
    this.code = code
  }
}

/**
 * A configuration that cannot run as it stands (loadConfig, serve's start-up checks): no restart helps until
 * someone edits it, so serve exits EX_CONFIG (78) on it, which the systemd unit does not restart.
 */
export class ConfigurationError extends OperatorError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.name = 'ConfigurationError'
  }
}
