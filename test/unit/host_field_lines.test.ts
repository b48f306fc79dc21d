/**
 * RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1 request
 * message that lacks a Host header field and to any request message that contains more than one Host
 * header field line or a Host header field with an invalid field-value." Node refuses a missing Host
 * itself; a repeated one it passes on, keeping the first in req.headers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { describe, expect, it } from 'vitest'
import { refuseRepeatedHost } from '../../src/http/host_field_lines.ts'

function request(rawHeaders: string[]): IncomingMessage {
  return { rawHeaders } as unknown as IncomingMessage
}

function response(): { res: ServerResponse; sent: { status?: number; headers?: Record<string, string>; body?: string } } {
  const sent: { status?: number; headers?: Record<string, string>; body?: string } = {}
  const res = {
    writeHead(status: number, headers: Record<string, string>) { sent.status = status; sent.headers = headers; return res },
    end(body: string) { sent.body = body; return res },
  }
  return { res: res as unknown as ServerResponse, sent }
}

describe('more than one Host field line', () => {
  it.each([
    ['two lines, other hosts', ['Host', 'a.example', 'Accept', '*/*', 'Host', 'b.example']],
    ['two lines, the same host in other cases of the name', ['host', 'a.example', 'HOST', 'a.example']],
    ['an empty second line', ['Host', 'a.example', 'Host', '']],
  ])('%s: refused 400 invalid_request, connection closed, not served', (_how, raw) => {
    let served = false
    const { res, sent } = response()
    refuseRepeatedHost(() => { served = true })(request(raw), res)
    expect(served).toBe(false)
    expect(sent.status).toBe(400)
    expect(JSON.parse(sent.body!)).toMatchObject({ error: 'invalid_request' })
    expect(sent.headers).toMatchObject({ 'Cache-Control': 'no-store', Connection: 'close', 'Content-Type': 'application/json' })
  })

  it.each([
    ['one Host line', ['Host', 'a.example', 'Accept', '*/*']],
    ['no Host line (HTTP/1.0)', ['Accept', '*/*']],
    ['a Host value as another field\'s name-like value', ['Host', 'a.example', 'X-Forwarded-Host', 'b.example', 'X-Via', 'Host']],
  ])('%s: served', (_how, raw) => {
    let served = false
    const { res, sent } = response()
    refuseRepeatedHost(() => { served = true })(request(raw), res)
    expect(served).toBe(true)
    expect(sent.status).toBeUndefined()
  })
})
