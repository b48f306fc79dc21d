import type { RequestListener } from 'node:http'
import { parserRefusal } from './client_error.ts'

/*
 * RFC 9112 §3.2: a request with more than one Host field line MUST be answered 400. Node refuses an HTTP/1.1
 * request with none, but passes one with two on, keeping the first in req.headers (and hono's adapter builds
 * its URL from that first one): a proxy or a log reading the other would see another host than the broker
 * did. Refused here for every route, POST /token's fast path and hono's alike, in the words and framing of
 * the parser's own refusals (client_error.ts): Connection: close, since which request this is is in doubt.
 */

const REPEATED_HOST = 'the request has more than one Host header field'

/** `listener`, behind a 400 for a request with more than one Host field line. */
export function refuseRepeatedHost(listener: RequestListener): RequestListener {
  return (req, res) => {
    if (!hasRepeatedHost(req.rawHeaders)) return listener(req, res)
    const { headers, body } = parserRefusal(400, REPEATED_HOST)
    res.writeHead(400, headers).end(body)
  }
}

/** Names sit at the even indexes of rawHeaders; a length test first keeps the cost to a compare per line. */
function hasRepeatedHost(raw: string[]): boolean {
  let seen = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length !== 4 || name.toLowerCase() !== 'host') continue
    if (seen) return true
    seen = true
  }
  return false
}
