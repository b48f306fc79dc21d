import type { Context } from 'hono'
import { InvalidRequest } from '../errors.ts'
import { shownName } from './zod_refusal.ts'

/**
 * The query as one value per name, refusing a name given twice. hono's c.req.query() quietly keeps one
 * of the values, so `?type=token.issued&type=token.denied` would filter by one type while the caller
 * believed it asked for both: an audit search that silently answers a different question. Every
 * parameter of the API is single-valued (lists are comma- or space-separated within one value). The name is
 * the caller's, so it is repeated as an unknown one is (a token put there comes back as [token]).
 */
export function singleValuedQuery(c: Context): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, values] of Object.entries(c.req.queries())) {
    if (values.length > 1) throw new InvalidRequest(`parameter ${shownName(name)} must not be repeated`)
    out[name] = values[0]!
  }
  return out
}
