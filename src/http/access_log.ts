import type { RequestSummary } from '../issuance/exchange.ts'
import type { Logger } from '../lib/logger.ts'

/** One access line's fields; written by the fast path and by the hono middleware alike. */
export interface AccessRecord {
  requestId: string
  clientRequestId?: string | undefined
  method: string
  path: string
  status: number
  startedAt: number
  /** POST /token: who asked for what (never a token), and the OAuth error code of a refusal. */
  summary?: RequestSummary | undefined
  error?: string | undefined
  /** Admin API: the authenticated principal's name. */
  principal?: string | undefined
}

/** Writes one access line per request, or nothing when `log.requests` is off. */
export type AccessLog = ((r: AccessRecord) => void) | undefined

export function accessLog(log: Logger, enabled: boolean): AccessLog {
  if (!enabled) return undefined
  return (r) => {
    const s = r.summary
    log.info('request', {
      requestId: r.requestId,
      ...(r.clientRequestId ? { clientRequestId: r.clientRequestId } : {}),
      method: r.method,
      path: pathOnly(r.path),
      status: r.status,
      ms: Math.round((performance.now() - r.startedAt) * 10) / 10,
      ...(s?.caller ? { caller: { iss: s.caller.iss, sub: s.caller.sub, ...(s.caller.client_id ? { client_id: s.caller.client_id } : {}) } } : {}),
      ...(s?.role ? { role: s.role } : {}),
      ...(s?.tokenKind ? { tokenKind: s.tokenKind } : {}),
      ...(s?.flow ? { flow: s.flow } : {}),
      ...(s ? { decision: r.status === 200 ? 'allow' : 'deny' } : {}),
      ...(r.error ? { error: r.error } : {}),
      ...(r.principal ? { principal: r.principal } : {}),
    })
  }
}

/**
 * The path without its query string: a query can carry anything a caller typed (a token pasted into a
 * URL), and the path is what an operator groups by. Capped, since the caller chooses it.
 */
export function pathOnly(url: string): string {
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  return path.length > 200 ? `${path.slice(0, 200)}...` : path
}
