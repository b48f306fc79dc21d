import type { Context, MiddlewareHandler } from 'hono'
import type { Logger } from '../../lib/logger.ts'
import type { AccessLog } from '../access_log.ts'
import type { RequestSummary } from '../../issuance/exchange.ts'

declare module 'hono' {
  interface ContextVariableMap {
    /** Filled by POST /token for the access line: caller, role, token kind. */
    summary: RequestSummary | undefined
    /** The OAuth error code of an error response, set where errors are shaped (oauth_error_response.ts). */
    errorCode: string | undefined
  }
}

/**
 * One access line per request answered by the hono app, after the response (errors included: hono's
 * onError has already turned them into a response by then). Mounted after requestId().
 */
export function accessLogMiddleware(write: NonNullable<AccessLog>, log: Logger): MiddlewareHandler {
  return async (c, next) => {
    const startedAt = performance.now()
    await next()
    const principal = c.get('admin')?.id
    try {
      writeLine(write, c, startedAt, principal)
    } catch (err) {
      // The answer is built and, for POST /token, its token issued and audited: a throw here would replace it
      // with a 500 (as the fast path, which has already sent it, never does). Reported once, if that can be.
      try {
        // With the request id the exchange audited under, which the missing line would have carried.
        log.error('access line not written', { requestId: c.get('requestId'), err })
      } catch {
        // The logger itself is what failed.
      }
    }
  }
}

function writeLine(write: NonNullable<AccessLog>, c: Context, startedAt: number, principal: string | undefined): void {
  write({
    requestId: c.get('requestId'),
    clientRequestId: c.get('clientRequestId'),
    method: c.req.method,
    path: c.req.path,
    status: c.res.status,
    startedAt,
    summary: c.get('summary'),
    error: c.get('errorCode'),
    principal,
  })
}

