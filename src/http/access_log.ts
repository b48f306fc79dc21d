import type { RequestSummary } from '../issuance/exchange.ts'
import { cutTokens } from '../lib/cut_tokens.ts'
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
    // Built field by field, in the line's order: one object per request instead of one per optional field.
    const line: Record<string, unknown> = { requestId: r.requestId }
    if (r.clientRequestId) line.clientRequestId = r.clientRequestId
    line.method = r.method
    line.path = pathOnly(r.path)
    line.status = r.status
    line.ms = Math.round((performance.now() - r.startedAt) * 10) / 10
    const s = r.summary
    if (s?.caller) {
      const { iss, sub, client_id } = s.caller
      line.caller = client_id ? { iss, sub, client_id } : { iss, sub }
    }
    if (s?.role) line.role = s.role
    if (s?.tokenKind) line.tokenKind = s.tokenKind
    if (s?.flow) line.flow = s.flow
    if (s) line.decision = r.status === 200 ? 'allow' : 'deny'
    if (r.error) line.error = r.error
    if (r.principal) line.principal = r.principal
    log.info('request', line)
  }
}

/**
 * The path without its query string: a query can carry anything a caller typed (a token pasted into a
 * URL), and the path is what an operator groups by. A token pasted into the path itself (a misbuilt URL)
 * is cut segment by segment, so the route around it stays readable. Capped, since the caller chooses it.
 */
export function pathOnly(url: string): string {
  const q = url.indexOf('?')
  const path = (q === -1 ? url : url.slice(0, q)).split('/').map(cutSegment).join('/')
  return path.length > 200 ? `${path.slice(0, 200)}...` : path
}

/**
 * A standard-base64 token in a path comes percent-encoded (%2B, %2F, %3D), and the router's decoding keeps
 * those escapes: split at each one, no piece is long enough to look like a token. The segment is judged with
 * them decoded; one with nothing token-shaped is written as it came, escapes and all.
 */
function cutSegment(segment: string): string {
  const decoded = segment.includes('%') ? segment.replace(/%2B/gi, '+').replace(/%2F/gi, '/').replace(/%3D/gi, '=') : segment
  const cut = cutTokens(decoded)
  return cut === decoded ? segment : cut
}
