import { ServerResponse, type IncomingMessage, type RequestListener, type Server } from 'node:http'
import type { Socket } from 'node:net'
import { withinMs } from '../lib/within_ms.ts'

export interface DrainResult {
  /** Connections still open when the grace ran out, closed then. 0: every request finished in time. */
  forced: number
}

/**
 * Graceful shutdown of a listener: stop accepting, close idle kept-alive connections at once, let the
 * requests in flight finish (each answered with `Connection: close`, as is any request that arrives on a
 * connection accepted before the drain), and close whatever is left when the grace runs out.
 *
 * Node's own close() also drops every connection with no request in progress, including one just
 * accepted whose request is still on the wire: to its client that is a reset, not a refusal. So the
 * drain decides what is idle itself: a connection that has served a request and has none in progress.
 */
export class ListenerDrain {
  #draining = false
  /** Connections that have carried a request, with how many are in progress on each. */
  readonly #active = new Map<Socket, number>()
  /** Every open connection (TCP, below TLS), for closing what is left when the grace runs out. */
  readonly #sockets = new Set<Socket>()

  /**
   * The response class to create the listener with (`createServer({ ServerResponse })`): a response whose
   * head goes out once the drain has begun says `Connection: close`, whenever its request arrived. It asks
   * at that moment rather than the drain keeping a set of the responses not yet sent: with a set that held
   * each response until its 'close', V8 promoted the request and response objects of nearly every request
   * to the old generation (`--trace-gc`, POST /token under wrk: 2.6-4.5 KB promoted per request in 9 runs
   * of 10, against 67-126 B in 5 runs of 6 without it), and the old generation grew to four times the
   * live heap between full collections (docs/performance.md).
   */
  readonly ServerResponse: typeof ServerResponse

  constructor() {
    const drain = this
    this.ServerResponse = class DrainAwareResponse<Request extends IncomingMessage = IncomingMessage> extends ServerResponse<Request> {
      // Every head goes through writeHead: Node's implicit head (write or end without it) calls it too.
      override writeHead(...args: [statusCode: number, ...rest: unknown[]]): this {
        if (drain.#draining && !this.headersSent) this.setHeader('Connection', 'close')
        return super.writeHead(...(args as Parameters<ServerResponse['writeHead']>))
      }
    }
  }

  /** Follows the listener's connections; call once, before it accepts any. */
  attach(server: Server): void {
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket)
      socket.once('close', () => this.#sockets.delete(socket))
    })
  }

  /** The request listener, wrapped to count each connection's requests in progress. */
  wrap(listener: RequestListener): RequestListener {
    return (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket
      if (!this.#active.has(socket)) socket.once('close', () => this.#active.delete(socket))
      this.#active.set(socket, (this.#active.get(socket) ?? 0) + 1)
      let done = false
      const end = () => {
        if (done) return
        done = true
        const n = (this.#active.get(socket) ?? 1) - 1
        if (this.#active.has(socket)) this.#active.set(socket, n)
        // A response that began before the drain may have promised keep-alive: close it once idle.
        if (this.#draining && n === 0) setImmediate(() => { if (this.#active.get(socket) === 0) socket.destroySoon() })
      }
      res.once('finish', end)
      res.once('close', end)
      listener(req, res)
    }
  }

  async drain(server: Server, graceMs: number): Promise<DrainResult> {
    this.#draining = true
    // Node's close() calls closeIdleConnections(); this one spares connections yet to send their first request.
    server.closeIdleConnections = () => {
      for (const [socket, n] of this.#active) if (n === 0) socket.destroySoon()
    }
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    let forced = 0
    if (await withinMs(closed.then(() => 'closed' as const), graceMs) === undefined) {
      forced = this.#sockets.size
      server.closeAllConnections()
      for (const socket of this.#sockets) socket.destroy()
      await closed
    }
    return { forced }
  }
}
