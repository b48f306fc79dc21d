import type { RequestListener, Server } from 'node:http'
import { parserRefusal, type FramingRefusal } from './client_error.ts'

/*
 * At most http.max_headers_count header lines per request, whichever Node runs. Node refuses a request with
 * more than server.maxHeadersCount lines (431) only since its fix for CVE-2026-58044 (22.23.2, 24.18.1,
 * 26.5.1 as reported; package.json allows 22.19). Before it (Node 20 checked), it read that many and
 * dropped the rest without a word, from req.headers and rawHeaders alike, while a proxy in front saw them
 * all: a Content-Encoding or a second Content-Type on line 101 went unseen by the checks that refuse them.
 * So Node is told to read one line more than the limit, and a request that has it is refused here.
 */

/** Sets the server to read one header line more than `limit`, so refuseExtraHeaderLines can tell there was more. */
export function readOneHeaderLineMore(server: Server, limit: number): void {
  server.maxHeadersCount = limit + 1
}

/**
 * `listener`, behind a refusal (431, RFC 6585 §5) of a request with more than `limit` header lines;
 * `shape` shapes the answer (OAuth's by default, Vault's on the Vault-compatible listener).
 */
export function refuseExtraHeaderLines(limit: number, listener: RequestListener, shape: FramingRefusal = parserRefusal): RequestListener {
  const most = 2 * limit
  return (req, res) => {
    if (req.rawHeaders.length <= most) return listener(req, res)
    const { headers, body } = shape(431)
    res.writeHead(431, headers).end(body)
  }
}
