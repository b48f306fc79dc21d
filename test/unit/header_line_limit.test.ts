/**
 * At most http.max_headers_count header lines, whichever Node runs. Node 20 (checked) and, as reported with
 * CVE-2026-58044, Node before 22.23.2 / 24.18.1 read server.maxHeadersCount lines and dropped the rest
 * without a word, from req.headers and rawHeaders alike; newer Node refuses the request (431). A request
 * as the older Node delivers it (one line more than the limit, the rest dropped) is simulated here, since
 * the Node running the tests no longer produces one. Status: RFC 6585 §5.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { describe, expect, it } from 'vitest'
import { readOneHeaderLineMore, refuseExtraHeaderLines } from '../../src/http/header_line_limit.ts'

function request(lines: number): IncomingMessage {
  return { rawHeaders: Array.from({ length: lines }, (_, i) => [`x-${i}`, 'v']).flat() } as unknown as IncomingMessage
}

function response(): { res: ServerResponse; sent: { status?: number; headers?: Record<string, string>; body?: string } } {
  const sent: { status?: number; headers?: Record<string, string>; body?: string } = {}
  const res = {
    writeHead(status: number, headers: Record<string, string>) { sent.status = status; sent.headers = headers; return res },
    end(body: string) { sent.body = body; return res },
  }
  return { res: res as unknown as ServerResponse, sent }
}

describe('header lines beyond the limit', () => {
  it('a request with one line more than the limit is refused with 431 invalid_request, not served', () => {
    let served = false
    const listener = refuseExtraHeaderLines(5, () => { served = true })
    const { res, sent } = response()
    listener(request(6), res)
    expect(served).toBe(false)
    expect(sent.status).toBe(431)
    expect(JSON.parse(sent.body!)).toMatchObject({ error: 'invalid_request' })
    expect(sent.headers).toMatchObject({ 'Cache-Control': 'no-store', Connection: 'close', 'Content-Type': 'application/json' })
  })

  it('a request with exactly the limit is served', () => {
    let served = false
    const { res, sent } = response()
    refuseExtraHeaderLines(5, () => { served = true })(request(5), res)
    expect(served).toBe(true)
    expect(sent.status).toBeUndefined()
  })

  it('Node is told to read one line more than the limit, so the guard can see there was more', () => {
    const server = { maxHeadersCount: 0 } as unknown as Server
    readOneHeaderLineMore(server, 100)
    expect(server.maxHeadersCount).toBe(101)
  })
})
