import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { BrokerError, TemporarilyUnavailable } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'

/** Headers every token-endpoint response carries, success or error (RFC 6749 §5.1). */
export const NO_STORE_HEADERS = { 'Cache-Control': 'no-store', Pragma: 'no-cache' } as const

/** An OAuth error as status, JSON body and extra headers, independent of the HTTP framework. */
export interface OAuthErrorReply {
  status: ContentfulStatusCode
  body: { error: string; error_description?: string }
  headers: Record<string, string>
}

/**
 * The only place that decides what an error looks like on the wire (RFC 6749 §5.2). Internal errors
 * show only `server_error`; their details go to the log with the request id.
 */
export function oauthErrorReply(err: unknown, log: Logger, requestId: string | undefined): OAuthErrorReply {
  if (err instanceof BrokerError) {
    return {
      status: err.status,
      body: { error: err.error, error_description: toErrorDescription(err.description) },
      headers: {
        ...NO_STORE_HEADERS,
        ...(err.status === 401 ? { 'WWW-Authenticate': 'Basic realm="condor-token-broker"' } : {}),
        ...(err instanceof TemporarilyUnavailable ? { 'Retry-After': String(err.retryAfter) } : {}),
      },
    }
  }
  log.error('unhandled error', { err, requestId })
  return { status: 500, body: { error: 'server_error' }, headers: { ...NO_STORE_HEADERS } }
}

/** oauthErrorReply as hono's onError handler. */
export function oauthErrorResponse(log: Logger) {
  return (err: unknown, c: Context): Response => {
    const reply = oauthErrorReply(err, log, c.get('requestId'))
    for (const [name, value] of Object.entries(reply.headers)) c.header(name, value)
    return c.json(reply.body, reply.status)
  }
}

/**
 * RFC 6749 §5.2: error_description "MUST NOT include characters outside the set %x20-21 / %x23-5B /
 * %x5D-7E". Descriptions quote caller input (JSON-style, with `…` when shortened), so map `"` to `'`,
 * `\` to `/`, `…` to `...`, and anything else outside the set to `?`. The audit log keeps the original.
 */
export function toErrorDescription(description: string): string {
  return description
    .replaceAll('"', "'")
    .replaceAll('\\', '/')
    .replaceAll('\u2026', '...')
    .replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?')
}
