import type { Context, MiddlewareHandler } from 'hono'
import { MethodNotAllowed } from '../../errors.ts'
import type { MethodTable } from '../method_table.ts'

/** A part of the site that answers its errors in its own form (the console's HTML pages). */
export interface OwnErrorPages {
  /** `/console`: the path itself and everything under it. */
  prefix: string
  answer: (c: Context, err: MethodNotAllowed) => Response
}

/**
 * RFC 9110 §15.5.6: a path the broker serves, asked with a method it does not support, is 405 with Allow.
 * Runs before any route, so the answer is the same whether or not the route would authenticate first: the
 * methods of a path are public (GET /openapi.json lists them). A path no route serves is left to notFound.
 * `table` is read at the first request, when every route is registered.
 */
export function methodGuard(table: () => MethodTable, pages: readonly OwnErrorPages[] = []): MiddlewareHandler {
  return async (c, next) => {
    const allowed = table().allowed(c.req.path)
    if (allowed === undefined || allowed.includes(c.req.method)) return next()
    const err = new MethodNotAllowed(`this path answers only ${allowed.join(', ')}`, allowed)
    const own = pages.find((p) => c.req.path === p.prefix || c.req.path.startsWith(`${p.prefix}/`))
    if (own) return own.answer(c, err)
    throw err
  }
}
