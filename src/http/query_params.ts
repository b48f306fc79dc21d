import type { Context } from 'hono'
import { InvalidRequest } from '../errors.ts'

/**
 * The query as one value per name, refusing a name given twice. hono's c.req.query() quietly keeps one
 * of the values, so `?type=token.issued&type=token.denied` would filter by one type while the caller
 * believed it asked for both: an audit search that silently answers a different question. Every
 * parameter of the API is single-valued (lists are comma- or space-separated within one value).
 */
export function singleValuedQuery(c: Context): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, values] of Object.entries(c.req.queries())) {
    if (values.length > 1) throw new InvalidRequest(`parameter ${name} must not be repeated`)
    out[name] = values[0]!
  }
  return out
}
