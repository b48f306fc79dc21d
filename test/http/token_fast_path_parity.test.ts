/**
 * POST /token is answered by the fast path (src/http/token_fast_path.ts) on `serve`'s listener; the same
 * request with a query string goes through the hono app and its route. Each case here sends the same bytes
 * both ways, on a raw loopback socket, and holds the fast path to what the hono path does.
 */
import { connect, type Socket } from 'node:net'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { ListenerDrain } from '../../src/http/drain.ts'
import type { Exchange } from '../../src/http/routes/token.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { brokerRequestListener } from '../../src/server.ts'
import { testDeps } from '../support/broker_deps.ts'

/** Reads the form, then answers a fixed token response: the transport is under test, not the exchange. */
const exchange: Exchange = async (readForm) => {
  await readForm()
  return { access_token: 'x.y.z', issued_token_type: 'urn:ietf:params:oauth:token-type:jwt', token_type: 'Bearer', expires_in: 60 } as never
}

let server: Server
let port: number
beforeAll(async () => {
  server = createServer(brokerRequestListener(createApp(testDeps({ exchange })), exchange, silentLogger))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  port = (server.address() as AddressInfo).port
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

/** The fast path takes exactly `/token`; a query string sends the same request through hono. */
const PATHS = [['fast path', '/token'], ['hono', '/token?via=hono']] as const

interface Exchanged { text: string; closedAfterMs: number | undefined }

/**
 * Writes `bytes` on a fresh connection and collects what comes back until the server closes it or
 * `waitMs` passes; `closedAfterMs` counts from the first byte of the answer.
 */
function exchangeRaw(bytes: string, waitMs: number): Promise<Exchanged> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1')
    let text = ''
    let firstAt: number | undefined
    const timer = setTimeout(() => { socket.destroy(); resolve({ text, closedAfterMs: undefined }) }, waitMs)
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => { firstAt ??= performance.now(); text += d })
    socket.on('error', () => undefined)
    socket.on('close', () => { clearTimeout(timer); resolve({ text, closedAfterMs: firstAt === undefined ? undefined : performance.now() - firstAt }) })
    socket.on('connect', () => socket.write(bytes))
    socket.on('timeout', reject)
  })
}

/**
 * A fixed Host: the fast path takes only a Host hono's adapter would serve as sent and leaves any other to
 * hono (token_fast_path_host.test.ts); a Host left to hono would make a case here compare hono with itself.
 */
function head(path: string, fields: string[]): string {
  return [`POST ${path} HTTP/1.1`, 'Host: broker.example.org', ...fields, '', ''].join('\r\n')
}

const FORM = 'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a'

describe('POST /token: the fast path answers as the hono path does', () => {
  it.each(PATHS)('%s: a declared body over the limit is refused and the connection closed soon after, not read for the request timeout', async (_via, path) => {
    // 100 MB declared, 10 bytes sent: the rest never comes. hono's adapter drains a refused body for at
    // most 500 ms before it closes the connection; Node alone would read it until request_timeout.
    const got = await exchangeRaw(head(path, ['Content-Type: application/x-www-form-urlencoded', 'Content-Length: 100000000']) + 'grant_type', 4_000)
    expect(got.text).toMatch(/^HTTP\/1\.1 400 /)
    expect(got.closedAfterMs).toBeDefined()
    expect(got.closedAfterMs!).toBeLessThan(2_000)
  })

  it.each(PATHS)('%s: a content-coded body is refused unread and the connection closed soon after', async (_via, path) => {
    const got = await exchangeRaw(head(path, ['Content-Type: application/x-www-form-urlencoded', 'Content-Encoding: gzip', 'Content-Length: 5000']) + 'x', 4_000)
    expect(got.text).toMatch(/^HTTP\/1\.1 400 /)
    expect(got.closedAfterMs).toBeDefined()
    expect(got.closedAfterMs!).toBeLessThan(2_000)
  })

  it.each(PATHS)('%s: two pipelined requests on one connection are answered in order, the second closing it', async (_via, path) => {
    const one = head(path, ['Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`]) + FORM
    const two = head(path, ['Content-Type: text/plain', `Content-Length: ${FORM.length}`, 'Connection: close']) + FORM
    const got = await exchangeRaw(one + two, 4_000)
    // A body ends without a line break: the next status line follows it directly.
    const statuses = [...got.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1])
    expect(statuses).toEqual(['200', '400'])
    expect(got.closedAfterMs).toBeDefined()
  })

  // A refusal of a body the client sent in full is an ordinary answer on a kept-alive connection (curl,
  // HTCondor's tools and the pilot reuse theirs): the next request on it is answered, and nothing closes it.
  it.each(PATHS.flatMap(([via, path]) => [
    [via, path, 'a form of the wrong content type', ['Content-Type: text/plain', `Content-Length: ${FORM.length}`], FORM],
    [via, path, 'a body over the limit, sent in full', ['Content-Type: application/x-www-form-urlencoded', 'Content-Length: 40000'], 'a'.repeat(40_000)],
  ]))('%s (%s): %s is refused, the pipelined request after it answered, the connection kept', async (_via, path, _how, fields, body) => {
    const next = head(path, ['Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`]) + FORM
    const got = await exchangeRaw(head(path, fields) + body + next, 1_500)
    const statuses = [...got.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1])
    expect(statuses).toEqual(['400', '200'])
    expect(got.closedAfterMs).toBeUndefined()
  })

  // RFC 9112 §3.2: a server MUST answer 400 to a Host whose value is invalid (uri-host [ ":" port ], RFC 3986
  // §3.2.2). Node checks only that an HTTP/1.1 request has one; hono's adapter refuses one it cannot build a URL with.
  it.each(PATHS.flatMap(([via, path]) => [
    [via, path, 'a Host with a space', ['Host: a b']],
    [via, path, 'a Host with a path', ['Host: broker.example.org/x']],
  ]))('%s (%s): %s is refused with invalid_request', async (_via, path, _how, hosts) => {
    const lines = [`POST ${path} HTTP/1.1`, ...hosts, 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`, 'Connection: close', '', '']
    const got = await exchangeRaw(lines.join('\r\n') + FORM, 4_000)
    expect(got.text).toMatch(/^HTTP\/1\.1 400 /)
    expect(JSON.parse(got.text.slice(got.text.indexOf('\r\n\r\n') + 4))).toEqual({ error: 'invalid_request', error_description: expect.any(String) })
  })

  // RFC 9112 §3.2: a server MUST answer 400 to a request with more than one Host field line; Node keeps the
  // first in req.headers and passes the request on, so a proxy reading the second routes it elsewhere.
  it.each(PATHS.flatMap(([via, path]) => [
    [via, path, 'two Host lines naming other hosts', ['Host: broker.example.org', 'Host: evil.example.net']],
    [via, path, 'two Host lines naming the same host', ['Host: broker.example.org', 'host: broker.example.org']],
  ]))('%s (%s): %s are refused with invalid_request and the connection closed', async (_via, path, _how, hosts) => {
    const lines = [`POST ${path} HTTP/1.1`, ...hosts, 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`, '', '']
    const got = await exchangeRaw(lines.join('\r\n') + FORM, 4_000)
    expect(got.text).toMatch(/^HTTP\/1\.1 400 /)
    expect(JSON.parse(got.text.slice(got.text.indexOf('\r\n\r\n') + 4))).toEqual({ error: 'invalid_request', error_description: expect.any(String) })
    expect(got.closedAfterMs).toBeDefined()
  })

  it.each(PATHS)('%s: a Host with a port, and an IPv6 literal, are served', async (_via, path) => {
    for (const host of ['broker.example.org:8443', '[::1]:8443']) {
      const got = await exchangeRaw([`POST ${path} HTTP/1.1`, `Host: ${host}`, 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`, 'Connection: close', '', ''].join('\r\n') + FORM, 4_000)
      expect(got.text, host).toMatch(/^HTTP\/1\.1 200 /)
    }
  })

  // Hosts a client may legitimately send (RFC 3986 §3.2.2 reg-name, any case, a trailing dot, an underscore
  // of an internal name, punycode, ports, IPv6 literals) are served on both paths; values outside that grammar
  // are refused on both (RFC 9112 §3.2's MUST). Some values in the grammar hono's adapter cannot make a URL
  // of as sent (a non-canonical IPv6 literal, a percent-encoded name, an empty or out-of-range port): /token
  // must answer them as /token?x does, or a client's request would work or fail by its query string.
  const SERVED = ['broker.example.org', 'broker.example.org.', 'BROKER.Example.ORG', 'submit_01.cluster.internal', 'xn--bcher-kva.example', 'broker.example.org:443', 'broker.example.org:9618', '[::1]', '[2001:DB8::1]:8443', '127.0.0.1:80']
  const REFUSED = ['a"b', 'a{b', 'a`b', '[zzz]', '[1.2.3.4]']
  const AS_HONO = ['[0:0:0:0:0:0:0:1]', '[::FFFF:127.0.0.1]', '%62roker.example.org', 'broker.example.org:', 'broker.example.org:99999', '[v1.x]']
  it.each([...SERVED.map((h) => [h, 200]), ...REFUSED.map((h) => [h, 400]), ...AS_HONO.map((h) => [h, undefined])] as Array<[string, number | undefined]>)(
    'Host %s: the same answer on both paths', async (host, expected) => {
      const statuses: string[] = []
      for (const [, path] of PATHS) {
        const got = await exchangeRaw([`POST ${path} HTTP/1.1`, `Host: ${host}`, 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`, 'Connection: close', '', ''].join('\r\n') + FORM, 4_000)
        statuses.push(got.text.slice(9, 12))
      }
      expect(statuses[0], 'fast path as hono').toBe(statuses[1])
      if (expected !== undefined) expect(statuses[1]).toBe(String(expected))
    })

  it('an empty Host and an HTTP/1.0 request without one: the same answer on both paths, whatever the listen host', async () => {
    for (const hostname of ['127.0.0.1', '::']) {
      const own = createServer(brokerRequestListener(createApp(testDeps({ exchange })), exchange, silentLogger, { hostname }))
      await new Promise<void>((r) => own.listen(0, '127.0.0.1', r))
      const ownPort = (own.address() as AddressInfo).port
      try {
        for (const head of [['POST {path} HTTP/1.1', 'Host: '], ['POST {path} HTTP/1.0']]) {
          const statuses: string[] = []
          for (const [, path] of PATHS) {
            const text = await new Promise<string>((resolve) => {
              const socket = connect(ownPort, '127.0.0.1')
              let t = ''
              const timer = setTimeout(() => { socket.destroy(); resolve(t) }, 3_000)
              socket.setEncoding('latin1')
              socket.on('data', (d: string) => { t += d })
              socket.on('error', () => undefined)
              socket.on('close', () => { clearTimeout(timer); resolve(t) })
              socket.write([head[0]!.replace('{path}', path), ...head.slice(1), 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`, 'Connection: close', '', ''].join('\r\n') + FORM)
            })
            statuses.push(text.slice(9, 12))
          }
          expect(statuses[0], `${hostname} ${head.join(' ')}`).toBe(statuses[1])
        }
      } finally {
        own.closeAllConnections()
        await new Promise((r) => own.close(r))
      }
    }
  })

  it('the same header fields on success and on refusal, whichever path answers', async () => {
    const names = async (path: string, fields: string[], body: string) => {
      const got = await exchangeRaw(head(path, [...fields, `Content-Length: ${body.length}`, 'Connection: close']) + body, 4_000)
      const [status, ...lines] = got.text.split('\r\n\r\n')[0]!.split('\r\n')
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
      // Values that differ per request or per adapter framing, not per path.
      for (const k of ['date', 'x-request-id', 'content-length']) { expect(headers[k], k).toBeDefined(); delete headers[k] }
      return { status, headers }
    }
    for (const [fields, body] of [
      [['Content-Type: application/x-www-form-urlencoded'], FORM],
      [['Content-Type: text/plain'], FORM],
      [['Content-Type: application/x-www-form-urlencoded', 'Content-Encoding: br'], FORM],
    ] as const) {
      expect(await names('/token', [...fields], body)).toEqual(await names('/token?via=hono', [...fields], body))
    }
  })
})

describe('POST /token: the fast path and hono alike in the access log and through a graceful shutdown', () => {
  it('writes the same access line fields for the same request', async () => {
    const lines: Record<string, unknown>[] = []
    const log = { ...silentLogger, info: (msg: string, fields?: Record<string, unknown>) => { if (msg === 'request') lines.push({ ...fields }) } }
    const summarised: Exchange = async (readForm, ctx) => {
      Object.assign(ctx.summary ?? {}, { role: 'submit-user', tokenKind: 'idtoken' })
      return exchange(readForm, ctx)
    }
    const own = createServer(brokerRequestListener(createApp(testDeps({ exchange: summarised, log })), summarised, log, { logRequests: true }))
    await new Promise<void>((r) => own.listen(0, '127.0.0.1', r))
    const ownPort = (own.address() as AddressInfo).port
    try {
      for (const [, path] of PATHS) {
        for (const [type, body] of [['application/x-www-form-urlencoded', FORM], ['text/plain', FORM]] as const) {
          const res = await fetch(`http://127.0.0.1:${ownPort}${path}`, { method: 'POST', headers: { 'content-type': type, 'x-request-id': 'caller-7' }, body })
          await res.text()
        }
      }
    } finally {
      own.closeAllConnections()
      await new Promise((r) => own.close(r))
    }
    // Fields that differ per request, not per path.
    const shape = (l: Record<string, unknown>) => ({ ...l, requestId: typeof l.requestId, ms: typeof l.ms })
    expect(lines).toHaveLength(4)
    expect(shape(lines[0]!)).toEqual(shape(lines[2]!))
    expect(shape(lines[1]!)).toEqual(shape(lines[3]!))
    expect(lines[0]).toMatchObject({ clientRequestId: 'caller-7', method: 'POST', path: '/token', status: 200, role: 'submit-user', decision: 'allow' })
    expect(lines[1]).toMatchObject({ status: 400, error: 'invalid_request', decision: 'deny' })
  })

  it('a drain lets a request in flight on either path finish, answered with Connection: close', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => { release = r })
    let arrived = 0
    const held: Exchange = async (readForm, ctx) => { arrived++; await gate; return exchange(readForm, ctx) }
    const drain = new ListenerDrain()
    const own = createServer({ ServerResponse: drain.ServerResponse }, drain.wrap(brokerRequestListener(createApp(testDeps({ exchange: held })), held, silentLogger)))
    drain.attach(own)
    await new Promise<void>((r) => own.listen(0, '127.0.0.1', r))
    const ownPort = (own.address() as AddressInfo).port
    const answers = PATHS.map(([, path]) => fetch(`http://127.0.0.1:${ownPort}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: FORM }))
    for (let i = 0; i < 200 && arrived < 2; i++) await new Promise((r) => setTimeout(r, 10))
    expect(arrived).toBe(2)
    const drained = drain.drain(own, 5_000)
    release()
    for (const res of await Promise.all(answers)) {
      expect(res.status).toBe(200)
      expect(res.headers.get('connection')).toBe('close')
      await res.text()
    }
    expect(await drained).toEqual({ forced: 0 })
  })
})

describe('POST /token: a client that goes away while its exchange runs', () => {
  it.each(PATHS)('%s: the exchange finishes, its access line is written, nothing is logged as a fault, and the listener serves on', async (_via, path) => {
    const lines: Array<[string, string, Record<string, unknown> | undefined]> = []
    const log = {
      info: (msg: string, fields?: Record<string, unknown>) => { lines.push(['info', msg, fields]) },
      warn: (msg: string, fields?: Record<string, unknown>) => { lines.push(['warn', msg, fields]) },
      error: (msg: string, fields?: Record<string, unknown>) => { lines.push(['error', msg, fields]) },
    }
    let release!: () => void
    const gate = new Promise<void>((r) => { release = r })
    let arrived = 0
    let finished = 0
    // Reads the whole body first, so the client's going away is noticed only at the answer.
    const held: Exchange = async (readForm, ctx) => {
      const form = await readForm()
      arrived++
      await gate
      finished++
      return exchange(async () => form, ctx)
    }
    const own = createServer(brokerRequestListener(createApp(testDeps({ exchange: held, log })), held, log, { logRequests: true }))
    await new Promise<void>((r) => own.listen(0, '127.0.0.1', r))
    const ownPort = (own.address() as AddressInfo).port
    try {
      const socket = connect(ownPort, '127.0.0.1')
      socket.on('error', () => undefined)
      socket.write([`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`, '', ''].join('\r\n') + FORM)
      for (let i = 0; i < 200 && arrived < 1; i++) await new Promise((r) => setTimeout(r, 10))
      expect(arrived).toBe(1)
      socket.destroy()
      await new Promise((r) => setTimeout(r, 50))
      release()
      for (let i = 0; i < 200 && finished < 1; i++) await new Promise((r) => setTimeout(r, 10))
      await new Promise((r) => setTimeout(r, 50))
      expect(finished).toBe(1)
      const next = await fetch(`http://127.0.0.1:${ownPort}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: FORM })
      expect(next.status).toBe(200)
      await next.text()
      expect(lines.filter(([level]) => level !== 'info')).toEqual([])
      expect(lines.filter(([, msg]) => msg === 'request').map(([, , f]) => f?.status)).toEqual([200, 200])
    } finally {
      own.closeAllConnections()
      await new Promise((r) => own.close(r))
    }
  })
})

describe('POST /token: a body that never ends', () => {
  it.each(PATHS)('%s: is cut off at the request timeout, as Node answers it, and nothing is issued', async (_via, path) => {
    let issued = 0
    const counting: Exchange = async (readForm, ctx) => { const r = await exchange(readForm, ctx); issued++; return r }
    const own = createServer({ requestTimeout: 300, headersTimeout: 300, connectionsCheckingInterval: 50 }, brokerRequestListener(createApp(testDeps({ exchange: counting })), counting, silentLogger))
    await new Promise<void>((r) => own.listen(0, '127.0.0.1', r))
    const ownPort = (own.address() as AddressInfo).port
    try {
      const got = await new Promise<{ text: string; closed: boolean }>((resolve) => {
        const socket = connect(ownPort, '127.0.0.1')
        let text = ''
        const timer = setTimeout(() => { socket.destroy(); resolve({ text, closed: false }) }, 3_000)
        socket.setEncoding('latin1')
        socket.on('data', (d: string) => { text += d })
        socket.on('error', () => undefined)
        socket.on('close', () => { clearTimeout(timer); resolve({ text, closed: true }) })
        socket.write([`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Content-Type: application/x-www-form-urlencoded', 'Content-Length: 1000', '', ''].join('\r\n') + 'grant_type=')
      })
      expect(got.closed).toBe(true)
      // Node's own answer to a request that outlived requestTimeout.
      expect(got.text).toMatch(/^HTTP\/1\.1 408 /)
      expect(issued).toBe(0)
    } finally {
      own.closeAllConnections()
      await new Promise((r) => own.close(r))
    }
  })
})
