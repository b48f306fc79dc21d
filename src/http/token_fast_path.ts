import type { IncomingMessage, ServerResponse } from 'node:http'
import type { RequestSummary } from '../issuance/exchange.ts'
import type { Logger } from '../lib/logger.ts'
import type { AccessLog } from './access_log.ts'
import { clientRequestIdFrom, newRequestId } from './middleware/request_id.ts'
import { NO_STORE_HEADERS, oauthErrorReply } from './oauth_error_response.ts'
import type { Exchange } from './routes/token.ts'
import { readNodeBody, readTokenForm } from './token_request_body.ts'

/**
 * The Host values hono's adapter takes as they are, without parsing them into a URL (@hono/node-server's
 * src/url.ts, reValidHost): a lower-case name or IPv4 address, with no port or one of 1000-59999. The
 * common case, tested first and cheaply.
 */
const PLAIN_HOST = /^[a-z0-9._-]+(?::(?:[1-5][0-9]{3,4}|[6-9][0-9]{3}))?$/

/**
 * Whether hono's adapter would serve POST /token with this Host, so that the fast path may. A request must
 * not work or fail by the path it took, and must not take the slow path for nothing: an explicit :443, an
 * upper-case name, an IPv6 literal, or a port of 60000 and over (Linux's ephemeral ports run to 60999) are
 * served by hono as by the fast path. Any Host other than a PLAIN_HOST one the adapter parses as a URL and
 * refuses (400) when the URL's host is not the one sent: a name a URL reads as an IPv4 address (1.2.3 is
 * 1.2.0.3), a percent-encoded name, a non-canonical IPv6 literal, a port over 65535. The same question is
 * asked here, in the adapter's terms (including that a host of the sent value's length passes), so a Host
 * it refuses goes to it and is refused there; about 1 µs, against the ~35 µs hono's path costs. An empty
 * Host is left to hono, which names the listener instead (and a URL would read the path as the host).
 */
function honoServesAsSent(host: string): boolean {
  if (PLAIN_HOST.test(host)) return true
  if (host === '') return false
  let hostname: string
  try {
    hostname = new URL(`http://${host}/token`).hostname
  } catch {
    return false
  }
  return hostname.length === host.length || hostname === host.replace(/:[0-9]+$/, '').toLowerCase()
}

/** Answers a Node request and returns true, or returns false to leave it to the next listener. */
export type NodeRequestHandler = (req: IncomingMessage, res: ServerResponse) => boolean

/**
 * POST /token straight on Node's request and response, ahead of the hono app. Going through hono's Node
 * adapter (Request, Context and Response objects) cost about 35 µs of main-thread CPU per token, a third
 * of the whole request, and a third more garbage (npm run bench: 102-128 → 69-85 µs per request).
 * Everything that decides what the endpoint does is shared with the hono route (routes/token.ts): form
 * parsing, the exchange (which parses and audits), request ids and the error shape, so this file only
 * moves bytes. The conformance suite runs through this handler as well as through hono. Anything other than exactly `POST /token` (other methods, a query
 * string), or with a Host hono's adapter would refuse or replace, goes to hono.
 */
export function tokenFastPath(exchange: Exchange, log: Logger, access?: AccessLog): NodeRequestHandler {
  return (req, res) => {
    if (req.method !== 'POST' || req.url !== '/token') return false
    const host = req.headers.host
    if (host === undefined || !honoServesAsSent(host)) return false
    const requestId = newRequestId()
    answer(req, res, exchange, log, access, requestId).catch((err: unknown) => failSafe(err, res, log, requestId))
    return true
  }
}

/**
 * A fault outside the exchange's own error handling (the logger, the access log, a write): nobody awaits
 * answer()'s promise, and Node ends the process on an unhandled rejection, where hono answers 500. Reported
 * once (the logger may be what failed, so its own throw is swallowed); a request not yet answered gets a 500
 * in the API's shape, one answered part-way loses its connection (a half answer must not look whole), and one
 * answered in full is left alone: its connection may already carry the next pipelined request's answer.
 */
function failSafe(err: unknown, res: ServerResponse, log: Logger, requestId: string): void {
  try {
    // The request id the exchange audited under: a token may have been issued, and this line may stand in for its access line.
    log.error('POST /token failed outside its error handling', { requestId, err })
  } catch {
    // The logger itself threw: nothing more can be said.
  }
  if (res.writableEnded || res.destroyed) return
  if (res.headersSent) {
    res.destroy()
    return
  }
  try {
    const body = JSON.stringify({ error: 'server_error' })
    res.writeHead(500, { ...NO_STORE_HEADERS, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body)
  } catch {
    res.destroy()
  }
}

async function answer(req: IncomingMessage, res: ServerResponse, exchange: Exchange, log: Logger, access: AccessLog, requestId: string): Promise<void> {
  const startedAt = access ? performance.now() : 0
  const summary: RequestSummary | undefined = access ? {} : undefined
  let status: number
  let body: string
  let headers: Record<string, string>
  let error: string | undefined
  try {
    const readForm = () => readTokenForm(
      { contentType: contentTypeOf(req), contentEncoding: req.headers['content-encoding'], transferEncoding: req.headers['transfer-encoding'] },
      () => readNodeBody(req))
    const address = req.socket.remoteAddress
    const result = await exchange(readForm, { requestId, ...(address ? { clientAddress: address } : {}), ...(summary ? { summary } : {}) })
    status = 200
    body = JSON.stringify(result)
    headers = NO_STORE_HEADERS
  } catch (err) {
    const reply = oauthErrorReply(err, log, requestId, clientRequestIdFrom(req.headers['x-request-id']))
    status = reply.status
    body = JSON.stringify(reply.body)
    headers = reply.headers
    error = reply.body.error
  }
  // After the answer is on its way (or dropped): the log line is not the caller's wait.
  const logAccess = () => access?.({ requestId, clientRequestId: clientRequestIdFrom(req.headers['x-request-id']), method: 'POST', path: '/token', status, startedAt, summary, error })
  // The client may have gone away while the exchange ran; its token (already audited) is simply dropped.
  if (res.writableEnded || res.destroyed) return logAccess()
  res.writeHead(status, {
    'X-Request-Id': requestId,
    ...headers,
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  })
  res.end(body)
  // Answered before the body was read to its end (refused unread: too large, content-coded): Node alone would
  // read the rest, however long, until request_timeout. hono's adapter gives it a short while, then closes.
  if (!req.complete) closeUnlessBodyEnds(req, res)
  logAccess()
}

/** How long a refused body may go on arriving after the answer before its connection is closed; hono's adapter waits as long. */
export const REFUSED_BODY_GRACE_MS = 500

/**
 * After the answer: the rest of an unread body is discarded as it comes, and if it has not ended within
 * REFUSED_BODY_GRACE_MS the connection is closed. Not at once: a client still sending would then get a reset
 * that can cost it the answer; and a short body that ends in time leaves the connection usable.
 */
function closeUnlessBodyEnds(req: IncomingMessage, res: ServerResponse): void {
  res.once('finish', () => {
    if (req.complete) return
    const timer = setTimeout(() => { if (!req.complete) req.socket.destroySoon() }, REFUSED_BODY_GRACE_MS)
    timer.unref()
    req.once('end', () => clearTimeout(timer))
    req.once('close', () => clearTimeout(timer))
    req.resume()
  })
}

/**
 * Every Content-Type field line, joined as hono (and the Fetch Headers it builds) joins them. Node's
 * req.headers keeps only the first of a repeated Content-Type, so a request with two (a singleton field,
 * RFC 9110 §5.3: its type is ambiguous) was read here as the first and refused by the hono route.
 */
function contentTypeOf(req: IncomingMessage): string | undefined {
  // A scan of rawHeaders rather than req.headersDistinct, which builds an object of every header per request.
  const raw = req.rawHeaders
  let value: string | undefined
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length === 12 && name.toLowerCase() === 'content-type') value = value === undefined ? raw[i + 1]! : `${value}, ${raw[i + 1]!}`
  }
  return value
}
