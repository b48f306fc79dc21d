/**
 * RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1 request
 * message that lacks a Host header field and to any request message that contains more than one Host
 * header field line or a Host header field with an invalid field-value." Node refuses a missing Host
 * itself; a repeated one it passes on, keeping the first in req.headers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { describe, expect, it } from 'vitest'
import { refuseBadHost } from '../../src/http/host_field_lines.ts'

/** As Node delivers it: every line in rawHeaders, the first Host in headers.host. */
function request(rawHeaders: string[]): IncomingMessage {
  const at = rawHeaders.findIndex((v, i) => i % 2 === 0 && v.toLowerCase() === 'host')
  return { rawHeaders, headers: at === -1 ? {} : { host: rawHeaders[at + 1] } } as unknown as IncomingMessage
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
    // Not uri-host [ ":" port ] (RFC 3986 §3.2.2): characters outside reg-name, a path, userinfo, a bad IP literal.
    ...['a"b', 'a{b', 'a`b', 'a b', 'a/b', 'user@a.example', 'a.example:8443:1', '[zzz]', '[1.2.3.4]', '[::1', 'a%zz', '[fe80::1%25eth0]']
      .map((h): [string, string[]] => [`Host: ${h}`, ['Host', h]]),
  ] as Array<[string, string[]]>)('%s: refused 400 invalid_request, connection closed, not served', (_how, raw) => {
    let served = false
    const { res, sent } = response()
    refuseBadHost(() => { served = true })(request(raw), res)
    expect(served).toBe(false)
    expect(sent.status).toBe(400)
    expect(JSON.parse(sent.body!)).toMatchObject({ error: 'invalid_request' })
    expect(sent.headers).toMatchObject({ 'Cache-Control': 'no-store', Connection: 'close', 'Content-Type': 'application/json' })
  })

  it.each([
    ['one Host line', ['Host', 'a.example', 'Accept', '*/*']],
    ['no Host line (HTTP/1.0)', ['Accept', '*/*']],
    ['a Host value as another field\'s name-like value', ['Host', 'a.example', 'X-Forwarded-Host', 'b.example', 'X-Via', 'Host']],
    // In the grammar: any case, a trailing dot, underscores, punycode, sub-delims, %XX, ports, IP literals.
    ...['BROKER.Example.org.', 'submit_01.internal', 'xn--bcher-kva.example', "a!$&'()*+,;=~b", '%62roker', 'a.example:', 'a.example:9618', '127.0.0.1', '[::1]:8443', '[2001:db8:0::1]', '[v1.x]', '']
      .map((h): [string, string[]] => [`Host: ${h}`, ['Host', h]]),
  ] as Array<[string, string[]]>)('%s: served', (_how, raw) => {
    let served = false
    const { res, sent } = response()
    refuseBadHost(() => { served = true })(request(raw), res)
    expect(served).toBe(true)
    expect(sent.status).toBeUndefined()
  })
})
