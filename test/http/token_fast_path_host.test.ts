/**
 * Which path answers POST /token, by its Host. The fast path saves about a third of a token's CPU; a Host it
 * left to hono when hono serves it just the same only cost time, silently: an explicit `:443`, an upper-case
 * name, an IPv6 literal, or a port of 60000 and over, which is where Linux hands out a quarter of its
 * ephemeral ports (32768-60999), so a benchmark on a free port measured hono in some runs and not in others.
 * Here the hono app and the fast path get different exchanges, so the answer says which path gave it.
 * A Host hono's adapter cannot serve as sent (its URL would name another host, or none) must still go to hono.
 */
import { connect } from 'node:net'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import type { Exchange } from '../../src/http/routes/token.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { brokerRequestListener } from '../../src/server.ts'
import { testDeps } from '../support/broker_deps.ts'

const FORM = 'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a'

function answering(token: string): Exchange {
  return async (readForm) => {
    await readForm()
    return { access_token: token, issued_token_type: 'urn:ietf:params:oauth:token-type:jwt', token_type: 'Bearer', expires_in: 60 } as never
  }
}

let server: Server
let port: number
beforeAll(async () => {
  server = createServer(brokerRequestListener(createApp(testDeps({ exchange: answering('via.hono.x') })), answering('via.fast.x'), silentLogger))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  port = (server.address() as AddressInfo).port
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

/** POST `path` with `host`; the status and the access_token that came back, if any. */
function post(host: string, path = '/token'): Promise<{ status: string; token: string | undefined }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    const done = () => {
      const body = text.slice(text.indexOf('\r\n\r\n') + 4)
      let token: string | undefined
      try { token = (JSON.parse(body) as { access_token?: string }).access_token } catch { token = undefined }
      resolve({ status: text.slice(9, 12), token })
    }
    const timer = setTimeout(() => { socket.destroy(); done() }, 3_000)
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => { text += d })
    socket.on('error', () => undefined)
    socket.on('close', () => { clearTimeout(timer); done() })
    socket.write([`POST ${path} HTTP/1.1`, `Host: ${host}`, 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`, 'Connection: close', '', ''].join('\r\n') + FORM)
  })
}

describe('POST /token: the fast path takes every Host hono would serve as sent', () => {
  it.each([
    // Ports outside 1000-59999: the default ports named explicitly, a low port, the top of Linux's ephemeral range.
    '127.0.0.1:60999', '127.0.0.1:61000', 'localhost:65535', 'broker.example.org:443', 'broker.example.org:80', 'broker.example.org:999',
    // Upper case (RFC 9110 §4.2.3: the host is case-insensitive), with or without a port; IPv6 literals.
    'BROKER.Example.ORG', 'Broker.example.org:8443', '[::1]', '[::1]:8443', '[2001:db8::1]:443',
  ])('Host %s: served 200 by the fast path', async (host) => {
    expect(await post(host)).toEqual({ status: '200', token: 'via.fast.x' })
  })

  it.each([
    // A dotted name of fewer than four numbers is an IPv4 address to a URL parser (WHATWG URL §3.5: 1.2.3 is
    // 1.2.0.3; 0x7f.1 is 127.0.0.1): hono's URL would name another host than the client sent.
    '1.2.3:443', '0x7f.1:443',
    // Not a port (RFC 3986 §3.2.3 allows any digits; a URL's port stops at 65535).
    'broker.example.org:99999',
  ])('Host %s: left to hono, which refuses it 400 as it refuses /token?x', async (host) => {
    const fast = await post(host)
    const hono = await post(host, '/token?via=hono')
    expect(fast.token).not.toBe('via.fast.x')
    expect(fast).toEqual(hono)
    expect(hono.status).toBe('400')
  })

  it('an empty Host is left to hono, which names the listener itself', async () => {
    expect((await post('')).token).not.toBe('via.fast.x')
  })
})
