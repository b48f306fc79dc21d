import type { RequestListener } from 'node:http'
import { isIPv6 } from 'node:net'
import { parserRefusal, type FramingRefusal } from './client_error.ts'

/*
 * RFC 9112 §3.2: a request with more than one Host field line, or one whose value is not uri-host [":" port],
 * MUST be answered 400. Node refuses an HTTP/1.1 request with none, but passes one with two on, keeping the
 * first in req.headers (and hono's adapter builds its URL from that first one): a proxy or a log reading the
 * other would see another host than the broker did. hono's adapter refuses some invalid values but takes
 * others (a '"', '{' or '`' in a name). Both are refused here for every route, POST /token's fast path and
 * hono's alike, in the words and framing of the parser's own refusals (client_error.ts): Connection: close,
 * since what the request is addressed to is in doubt. What this lets through, hono's adapter may still
 * refuse (a value it cannot make a URL of as sent); the fast path leaves those to it (token_fast_path.ts).
 */

const REPEATED_HOST = 'the request has more than one Host header field'
const INVALID_HOST = 'the Host header is not a host name or IP address with an optional port'

/**
 * uri-host [ ":" port ] (RFC 3986 §3.2.2, §3.2.3): an IP literal in brackets (an IPv6 address, captured to be
 * checked as one, or an IPvFuture), or a reg-name of unreserved, sub-delims and %XX (an IPv4 address is one).
 */
const HOST = /^(?:\[(?:([0-9A-Fa-f:.]+)|[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/

/**
 * `listener`, behind a 400 for a request with more than one Host field line or a Host that is no host;
 * `refusal` shapes the answer (OAuth's by default, Vault's on the Vault-compatible listener).
 */
export function refuseBadHost(listener: RequestListener, shape: FramingRefusal = parserRefusal): RequestListener {
  return (req, res) => {
    const refusal = hasRepeatedHost(req.rawHeaders) ? REPEATED_HOST : !validHost(req.headers.host) ? INVALID_HOST : undefined
    if (refusal === undefined) return listener(req, res)
    const { headers, body } = shape(400, refusal)
    res.writeHead(400, headers).end(body)
  }
}

/** No Host at all is Node's to refuse (HTTP/1.1) or to pass (HTTP/1.0, where it is optional). */
function validHost(host: string | undefined): boolean {
  if (host === undefined) return true
  const m = HOST.exec(host)
  return m !== null && (m[1] === undefined || isIPv6(m[1]))
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
