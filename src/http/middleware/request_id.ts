import { randomUUID } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'

declare module 'hono' {
  interface ContextVariableMap {
    requestId: string
    /** The caller's own X-Request-Id, when it sent a sane one: for logs only. */
    clientRequestId: string | undefined
  }
}

/**
 * The broker's id for one request: always fresh. It keys the request's audit records, so it is never
 * taken from the caller: two callers (or one careless one) sending the same X-Request-Id would otherwise
 * give unrelated records the same id.
 */
export function newRequestId(): string {
  return randomUUID()
}

/** The caller's X-Request-Id if sane (so logs line up across hops); never used as the audit request id. */
export function clientRequestIdFrom(given: string | string[] | undefined): string | undefined {
  return typeof given === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(given) ? given : undefined
}

/**
 * Tags each request with a fresh id for logs and audit records and returns it in X-Request-Id, which
 * the caller can quote to an operator; the caller's own X-Request-Id is kept beside it for the logs.
 */
export function requestId(): MiddlewareHandler {
  return async (c, next) => {
    const id = newRequestId()
    c.set('requestId', id)
    c.set('clientRequestId', clientRequestIdFrom(c.req.header('x-request-id')))
    c.header('X-Request-Id', id)
    await next()
  }
}
