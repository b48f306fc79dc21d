import { randomUUID } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'

declare module 'hono' {
  interface ContextVariableMap {
    requestId: string
  }
}

/** The caller's X-Request-Id if sane (so logs line up across hops), else a fresh UUID. */
export function requestIdFrom(given: string | undefined): string {
  return given && /^[A-Za-z0-9._-]{1,64}$/.test(given) ? given : randomUUID()
}

/** Tags each request with an id for logs and audit records, and echoes it in X-Request-Id. */
export function requestId(): MiddlewareHandler {
  return async (c, next) => {
    const id = requestIdFrom(c.req.header('x-request-id'))
    c.set('requestId', id)
    c.header('X-Request-Id', id)
    await next()
  }
}
