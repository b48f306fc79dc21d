import type { Context } from 'hono'
import { BrokerError } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'

/**
 * The only place that decides what an error looks like on the wire (RFC 6749 §5.2). Internal errors
 * show only `server_error`; their details go to the log with the request id.
 */
export function oauthErrorResponse(log: Logger) {
  return (err: unknown, c: Context): Response => {
    c.header('Cache-Control', 'no-store')
    c.header('Pragma', 'no-cache')
    if (err instanceof BrokerError) {
      if (err.status === 401) c.header('WWW-Authenticate', 'Basic realm="condor-token-broker"')
      return c.json({ error: err.error, error_description: toErrorDescription(err.description) }, err.status)
    }
    log.error('unhandled error', { err, requestId: c.get('requestId') })
    return c.json({ error: 'server_error' }, 500)
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
