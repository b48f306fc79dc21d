import type { MiddlewareHandler } from 'hono'
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
export function accessLogMiddleware(write: NonNullable<AccessLog>): MiddlewareHandler {
  return async (c, next) => {
    const startedAt = performance.now()
    await next()
    const principal = c.get('admin')?.id
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
}

