import type { IncomingMessage } from 'node:http'
import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { GoneCredentialState } from '../contract/job_credentials.ts'
import { AuditStoreUnavailable, BrokerError, CredentialGone, InvalidToken, MalformedBearer, MethodNotAllowed, SlowDown, TemporarilyUnavailable } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import { bodyCutOff } from './token_request_body.ts'

/** Headers every token-endpoint response carries, success or error (RFC 6749 §5.1). */
export const NO_STORE_HEADERS = { 'Cache-Control': 'no-store', Pragma: 'no-cache' } as const

/** An OAuth error as status, JSON body and extra headers, independent of the HTTP framework. */
export interface OAuthErrorReply {
  status: ContentfulStatusCode
  /** `credential`: only on a job-token 403 whose credential is gone for good (contract/job_credentials.ts). */
  body: { error: string; error_description?: string; credential?: GoneCredentialState }
  headers: Record<string, string>
}

/**
 * Protection spaces of the bearer tokens (RFC 6750 §3), named for what the route takes, so that a 401
 * does not ask a credd or a user for an admin token. The admin API's: the bootstrap token or an IAM admin.
 */
export const ADMIN_REALM = 'condor-token-broker admin'
/** GET /metrics with `metrics.auth: bearer`: the scrape token, which is no admin token. */
export const METRICS_REALM = 'condor-token-broker metrics'
/** Every other bearer route: a user's IAM access token (registration, certificates), the credd's IDTOKEN (job tokens). */
export const CALLER_REALM = 'condor-token-broker'

declare module 'hono' {
  interface ContextVariableMap {
    /** The realm of a 401's challenge, set by the authentication that asks for another token than CALLER_REALM's. */
    bearerRealm: string | undefined
  }
}

/**
 * The only place that decides what an error looks like on the wire (RFC 6749 §5.2). Internal errors
 * show only `server_error`; their details go to the log with the request id (and the caller's own
 * X-Request-Id, when it sent one, so the two can be matched up).
 */
export function oauthErrorReply(err: unknown, log: Logger, requestId: string | undefined, clientRequestId?: string, realm = CALLER_REALM): OAuthErrorReply {
  if (err instanceof BrokerError) {
    logStoreOutage(err, log, requestId, clientRequestId)
    const description = toErrorDescription(err.description)
    return {
      status: err.status,
      body: { error: err.error, error_description: description, ...(err instanceof CredentialGone ? { credential: err.credential } : {}) },
      headers: { ...NO_STORE_HEADERS, ...challengeHeaders(err, description, realm) },
    }
  }
  log.error('unhandled error', { err, requestId, ...(clientRequestId ? { clientRequestId } : {}) })
  return { status: 500, body: { error: 'server_error' }, headers: { ...NO_STORE_HEADERS } }
}

/**
 * An audit store outage is answered 503 with a description that names nothing of the store; what the store
 * said goes to the log, once (a POST /token refusal has logged it already, with its caller).
 */
export function logStoreOutage(err: unknown, log: Logger, requestId: string | undefined, clientRequestId?: string): void {
  if (!(err instanceof AuditStoreUnavailable) || err.logged) return
  err.logged = true
  log.error('refused for an audit store outage; nothing was issued', { err: err.cause, requestId, ...(clientRequestId ? { clientRequestId } : {}) })
}

/** WWW-Authenticate for 401s and a malformed bearer's 400, Allow for 405s, Retry-After for 429s and 503s. `description` is already within the quoted-string-safe set. */
function challengeHeaders(err: BrokerError, description: string, realm: string): Record<string, string> {
  if (err instanceof InvalidToken) {
    // RFC 6750 §3: no error code when the request carried no bearer credentials at all.
    const params = err.presented ? `, error="${err.error}", error_description="${description}"` : ''
    return { 'WWW-Authenticate': `Bearer realm="${realm}"${params}` }
  }
  // RFC 6750 §3.1: a malformed bearer request is invalid_request, in the challenge too.
  if (err instanceof MalformedBearer) return { 'WWW-Authenticate': `Bearer realm="${realm}", error="${err.error}", error_description="${description}"` }
  if (err instanceof MethodNotAllowed) return { Allow: err.allow.join(', ') }
  if (err instanceof TemporarilyUnavailable || err instanceof SlowDown) return { 'Retry-After': String(err.retryAfter) }
  return {}
}

/** oauthErrorReply as hono's onError handler. */
export function oauthErrorResponse(log: Logger) {
  return (err: unknown, c: Context): Response => {
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
    const reply = oauthErrorReply(cutOffByClient(err, incoming) ? bodyCutOff(err) : err, log, c.get('requestId'), c.get('clientRequestId'), c.get('bearerRealm'))
    c.set('errorCode', reply.body.error)
    for (const [name, value] of Object.entries(reply.headers)) c.header(name, value)
    return c.json(reply.body, reply.status)
  }
}

/**
 * A route's read of the body failed because the client's connection closed first (Node's 'aborted',
 * ECONNRESET, on a request that never completed): the client's doing, answered (to nobody) and counted
 * as a refusal, not logged as a broker fault or counted as a 5xx.
 */
function cutOffByClient(err: unknown, incoming: IncomingMessage | undefined): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === 'ECONNRESET' && err.message === 'aborted'
    && incoming !== undefined && !incoming.complete
}

/**
 * RFC 6749 §5.2: error_description "MUST NOT include characters outside the set %x20-21 / %x23-5B /
 * %x5D-7E". Core messages quote caller input with quote() (src/lib/quote.ts), which already keeps to
 * that set; this is the net under everything else (zod messages, a `…` in a literal): `"` becomes `'`,
 * `\` becomes `/`, `…` becomes `...`, anything else outside the set `?`.
 */
export function toErrorDescription(description: string): string {
  return description
    .replaceAll('"', "'")
    .replaceAll('\\', '/')
    .replaceAll('\u2026', '...')
    .replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?')
}
