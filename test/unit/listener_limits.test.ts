import { EventEmitter } from 'node:events'
import { createServer as createHttpServer, request, type RequestListener, type Server } from 'node:http'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { applyListenerLimits, ListenerLimitsSchema, listenerServerOptions } from '../../src/http/listener_limits.ts'
import { addressKeyer } from '../../src/ratelimit/address_key.ts'

/** A connection as the 'connection' event hands it over: an address, destroy(), and 'close'. */
function fakeSocket(remoteAddress: string): EventEmitter & { remoteAddress: string; destroyed: boolean; destroy(): void } {
  const s = Object.assign(new EventEmitter(), {
    remoteAddress,
    destroyed: false,
    destroy() { s.destroyed = true; s.emit('close') },
  })
  return s
}

describe('the per-client connection limit', () => {
  // RFC 6177: an IPv6 end site gets at least a /64, so one host can open each connection from a new
  // address in it. Counted per exact address, 2001:db8::1, ::2, ::3 would each be a "client" of their own
  // and one host could take every one of max_connections.
  it('counts the addresses of one IPv6 /64 as one client', () => {
    const server = createServer()
    applyListenerLimits(server as unknown as Server, ListenerLimitsSchema.parse({ max_connections_per_client: 2 }), addressKeyer(64))
    const sockets = ['2001:db8::1', '2001:db8::2', '2001:db8::3', '2001:db8:0:1::1'].map((a) => {
      const s = fakeSocket(a)
      server.emit('connection', s)
      return s
    })
    expect(sockets.map((s) => s.destroyed)).toEqual([false, false, true, false])
    sockets[0]!.destroy()
    const again = fakeSocket('2001:db8::ffff')
    server.emit('connection', again)
    expect(again.destroyed).toBe(false)
  })

  it('counts IPv4 clients by their address, a mapped one as the IPv4 address it carries', () => {
    const server = createServer()
    applyListenerLimits(server as unknown as Server, ListenerLimitsSchema.parse({ max_connections_per_client: 1 }), addressKeyer(64))
    const sockets = ['192.0.2.7', '::ffff:192.0.2.7', '192.0.2.8'].map((a) => {
      const s = fakeSocket(a)
      server.emit('connection', s)
      return s
    })
    expect(sockets.map((s) => s.destroyed)).toEqual([false, true, false])
  })
})

/**
 * An HTTP server with the limits `l` applied, listening on loopback while `use` runs with its port; the
 * client socket `use` opens is its to destroy.
 */
async function withListener(l: ReturnType<typeof ListenerLimitsSchema.parse>, handler: RequestListener, use: (port: number, server: Server) => Promise<void>): Promise<void> {
  const server = createHttpServer(listenerServerOptions(l), handler)
  applyListenerLimits(server, l, (a) => a)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    await use((server.address() as AddressInfo).port, server)
  } finally {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

describe('a client that stops reading its answer', () => {
  // The headers and request timeouts bound only what the client sends. An answer larger than the socket
  // buffers (here 32 MiB, beyond what loopback buffers hold) to a client that never reads stalls in the
  // broker: without an idle timeout the connection and its buffered answer stayed for good (measured: still
  // open after 6 s with every other timeout under 1 s), so a few clients could hold every connection.
  it('is disconnected once nothing has moved for the idle timeout', async () => {
    const l = ListenerLimitsSchema.parse({ headers_timeout_ms: 400, request_timeout_ms: 800, keep_alive_timeout_ms: 500, idle_timeout_ms: 500 })
    const big = Buffer.alloc(32 * 1024 * 1024, 0x78)
    let client: Socket | undefined
    await withListener(l, (_req, res) => { res.writeHead(200, { 'Content-Length': big.length }); res.end(big) }, async (port, server) => {
      try {
        // The broker's side of the connection: what it holds. (The client, not reading, sees no end.)
        const closedAfter = await new Promise<number | 'open'>((resolve) => {
          let t0 = 0
          const deadline = setTimeout(() => resolve('open'), 3000)
          server.once('connection', (socket: Socket) => {
            t0 = Date.now()
            socket.once('close', () => { clearTimeout(deadline); resolve(Date.now() - t0) })
          })
          const s = connect(port, '127.0.0.1', () => {
            s.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')
            s.pause()
          })
          s.on('error', () => undefined)
          client = s
        })
        expect(closedAfter).not.toBe('open')
        expect(closedAfter).toBeGreaterThanOrEqual(400)
      } finally {
        client?.destroy()
      }
    })
  })

  // The idle timeout is for a client that stops reading, not for a broker still working on the answer: a
  // token request may wait on IAM (discovery, keys, introspection, the exchange: each up to
  // iam.timeout_seconds) far longer than the idle timeout, with no byte moving meanwhile. Cutting it then
  // would drop an answer whose token is already minted and audited.
  it('is not cut while the answer is still being worked out, however long that takes', async () => {
    const l = ListenerLimitsSchema.parse({ headers_timeout_ms: 200, request_timeout_ms: 400, keep_alive_timeout_ms: 200, idle_timeout_ms: 200 })
    await withListener(l, (_req, res) => {
      // Three idle timeouts with nothing on the wire, as a slow IAM would take.
      setTimeout(() => res.end('answered'), 700)
    }, async (port) => {
      const answer = await new Promise<string>((resolve) => {
        const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => { body += chunk })
          res.on('end', () => resolve(`${res.statusCode} ${body}`))
        })
        req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`))
        req.end()
      })
      expect(answer).toBe('200 answered')
    })
  })

  // The spare is for the broker's own work only: a client that stops sending its body is the idle one, and
  // is cut at the idle timeout even when the request timeout would allow it longer.
  it('still cuts a client that stalls in the middle of its request body', async () => {
    const l = ListenerLimitsSchema.parse({ headers_timeout_ms: 200, request_timeout_ms: 5000, keep_alive_timeout_ms: 200, idle_timeout_ms: 300 })
    let client: Socket | undefined
    await withListener(l, (req, res) => { req.resume(); req.on('end', () => res.end('read')) }, async (port) => {
      try {
        const closedAfter = await new Promise<number | 'open'>((resolve) => {
          const t0 = Date.now()
          const deadline = setTimeout(() => resolve('open'), 3000)
          const s = connect(port, '127.0.0.1', () => s.write('POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc'))
          s.on('error', () => undefined)
          s.once('close', () => { clearTimeout(deadline); resolve(Date.now() - t0) })
          s.resume()
          client = s
        })
        expect(closedAfter).not.toBe('open')
        expect(closedAfter).toBeGreaterThanOrEqual(250)
      } finally {
        client?.destroy()
      }
    })
  })
})
