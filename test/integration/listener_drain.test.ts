import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { readFileSync } from 'node:fs'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { connect as tlsConnect, TLSSocket } from 'node:tls'
import { afterEach, describe, expect, it } from 'vitest'
import { ListenerDrain } from '../../src/http/drain.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { loadConfig } from '../../src/config.ts'
import { startBroker } from '../../src/server.ts'
import { parseHead } from '../security/support/raw_http.ts'
import { tempDir } from '../support/tmp.ts'

/** One kept-alive HTTP/1.1 connection driven by hand, so a test decides when each byte goes out. */
class RawConnection {
  readonly socket: Socket
  #buffer = ''
  #closed = false
  #waiters: Array<() => void> = []

  constructor(socket: Socket) {
    this.socket = socket
    this.socket.setEncoding('latin1')
    this.socket.on('data', (c: string) => { this.#buffer += c; this.#wake() })
    this.socket.on('close', () => { this.#closed = true; this.#wake() })
    this.socket.on('error', () => {})
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w()
  }

  connected(): Promise<void> {
    const ready = this.socket instanceof TLSSocket ? 'secureConnect' : 'connect'
    return new Promise((resolve) => this.socket.once(ready, () => resolve()))
  }

  write(text: string): void {
    this.socket.write(text)
  }

  /** The next complete response (head and Content-Length body), within 5 s. */
  async response(): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    const deadline = Date.now() + 5_000
    for (;;) {
      const end = this.#buffer.indexOf('\r\n\r\n')
      if (end >= 0) {
        const head = parseHead(this.#buffer.slice(0, end))
        if (!head) throw new Error(`not an HTTP response: ${JSON.stringify(this.#buffer.slice(0, 80))}`)
        const { status, headers } = head
        const length = Number(headers['content-length'] ?? 0)
        if (this.#buffer.length >= end + 4 + length) {
          const body = this.#buffer.slice(end + 4, end + 4 + length)
          this.#buffer = this.#buffer.slice(end + 4 + length)
          return { status, headers, body }
        }
      }
      if (this.#closed) throw new Error(`connection closed before a complete response: ${JSON.stringify(this.#buffer)}`)
      if (Date.now() > deadline) throw new Error('no complete response within 5 s')
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve)
        setTimeout(resolve, 100)
      })
    }
  }

  /** Resolves true once the server has closed the connection (within 5 s), false otherwise. */
  async closedByServer(): Promise<boolean> {
    for (let i = 0; i < 50 && !this.#closed; i++) await new Promise((r) => setTimeout(r, 100))
    return this.#closed
  }

  destroy(): void {
    this.socket.destroy()
  }
}

const GET = 'GET / HTTP/1.1\r\nHost: test\r\n\r\n'

/**
 * What the drain promises a client on a kept-alive connection: a request in flight when the drain starts
 * is answered in full and told `Connection: close`, an idle connection is closed at once, and a connection
 * accepted before the drain whose first request was still on the wire gets that request answered.
 */
describe('ListenerDrain', () => {
  const open: Array<{ server: Server; conns: RawConnection[] }> = []
  afterEach(async () => {
    for (const { server, conns } of open.splice(0)) {
      for (const c of conns) c.destroy()
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
  })

  /** A server whose handler answers `/slow` only when the test releases it. */
  async function serverWithDrain() {
    const drain = new ListenerDrain()
    let release: () => void = () => {}
    const released = new Promise<void>((r) => { release = r })
    let arrived: () => void = () => {}
    const slowArrived = new Promise<void>((r) => { arrived = r })
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      const answer = () => res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '2' }).end('ok')
      if (req.url === '/slow') {
        arrived()
        void released.then(answer)
      } else answer()
    }
    const server = createServer({ ServerResponse: drain.ServerResponse }, drain.wrap(handler))
    drain.attach(server)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const entry = { server, conns: [] as RawConnection[] }
    open.push(entry)
    const port = (server.address() as AddressInfo).port
    const conn = async () => {
      const c = new RawConnection(connect(port, '127.0.0.1'))
      entry.conns.push(c)
      await c.connected()
      return c
    }
    return { drain, server, conn, release, slowArrived }
  }

  it('answers the request in flight with Connection: close, closes idle connections at once', async () => {
    const { drain, server, conn, release, slowArrived } = await serverWithDrain()
    const idle = await conn()
    idle.write(GET)
    expect((await idle.response()).headers.connection).toBe('keep-alive')
    const busy = await conn()
    busy.write('GET /slow HTTP/1.1\r\nHost: test\r\n\r\n')
    await slowArrived

    const drained = drain.drain(server, 5_000)
    expect(await idle.closedByServer()).toBe(true)
    release()
    const reply = await busy.response()
    expect(reply).toMatchObject({ status: 200, body: 'ok' })
    expect(reply.headers.connection).toBe('close')
    expect(await busy.closedByServer()).toBe(true)
    expect(await drained).toEqual({ forced: 0 })
  })

  it('answers, with Connection: close, a first request that arrives after the drain began', async () => {
    const { drain, server, conn } = await serverWithDrain()
    const early = await conn()
    const drained = drain.drain(server, 5_000)
    early.write(GET)
    const reply = await early.response()
    expect(reply).toMatchObject({ status: 200, body: 'ok' })
    expect(reply.headers.connection).toBe('close')
    expect(await drained).toEqual({ forced: 0 })
  })
})

describe('serve drains its listener', () => {
  it('tells a kept-alive client whose request was in flight to close', async () => {
    const dir = tempDir('ctb-drain-')
    const env = { CTB_DATA_DIR: `${dir}/data`, CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0', CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false' }
    const broker = await startBroker(loadConfig({ env }), { log: silentLogger })
    let closed: Promise<unknown> | undefined
    const c = new RawConnection(tlsConnect({ port: broker.port, host: '127.0.0.1', servername: 'localhost', ca: readFileSync(broker.devCaFile!) }))
    try {
      await c.connected()
      c.write('GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n')
      expect((await c.response()).headers.connection).toBe('keep-alive')
      // The head of a POST /token goes out, its body only once the broker has begun to stop: the request
      // is in flight during the drain.
      const body = 'grant_type=client_credentials'
      c.write(`POST /token HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n`)
      await new Promise((r) => setTimeout(r, 100))
      closed = broker.close({ graceMs: 5_000 })
      c.write(body)
      const reply = await c.response()
      expect(reply.status).toBe(400)
      expect(JSON.parse(reply.body)).toMatchObject({ error: 'unsupported_grant_type' })
      expect(reply.headers.connection).toBe('close')
      expect(await closed).toEqual({ forced: 0 })
    } finally {
      c.destroy()
      await (closed ?? broker.close())
    }
  })
})
