import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { z } from 'zod'
import { integer } from '../lib/config_values.ts'

const Ms = integer(1)
const Count = integer(0)

/**
 * How long a client may take and how much it may hold (config `http:`). Node's own defaults let a client
 * send headers for a minute and a body for five, and hold any number of connections: a few hundred slow
 * clients (slowloris) would then tie up the broker without ever finishing a request.
 */
export const ListenerLimitsSchema = z.strictObject({
  /** The request line and all headers must arrive within this (408 and close otherwise); also bounds the TLS handshake. */
  headers_timeout_ms: Ms.default(10_000),
  /** The whole request, body included, must arrive within this. */
  request_timeout_ms: Ms.default(30_000),
  /** An idle kept-alive connection is closed after this. */
  keep_alive_timeout_ms: Ms.default(5_000),
  /**
   * A connection on which no byte moves either way for this long is closed, mid-answer too: the timeouts
   * above bound only what the client sends, so one that stops reading a large answer would hold its
   * connection (and the answer's buffers) for good. Keep it above the longest wait on IAM a request may make.
   */
  idle_timeout_ms: Ms.default(120_000),
  /** Most header lines in one request; a request with more is refused (431), never read with the rest dropped (header_line_limit.ts). */
  max_headers_count: integer(1).default(100),
  /** Largest request line plus headers, in bytes (431 beyond). */
  max_header_bytes: integer(1024).default(16_384),
  /** Open connections in all; further ones are closed at once. 0: no limit. */
  max_connections: Count.default(1024),
  /**
   * Open connections from one client; 0: no limit. A client is an IPv4 address, or an IPv6 network of
   * rate_limits.address.ipv6_prefix bits. Behind a proxy every client shares its address.
   */
  max_connections_per_client: Count.default(64),
}).superRefine((l, ctx) => {
  // Node refuses a headers timeout longer than the request timeout.
  if (l.headers_timeout_ms > l.request_timeout_ms) {
    ctx.addIssue({ code: 'custom', path: ['headers_timeout_ms'], message: 'must not exceed http.request_timeout_ms' })
  }
})

export type ListenerLimits = z.infer<typeof ListenerLimitsSchema>

/**
 * Options for http/https.createServer. Node checks for expired requests on a timer (30 s by default),
 * so a timeout is only as sharp as that timer: it runs at a quarter of the shortest timeout.
 */
export function listenerServerOptions(l: ListenerLimits): Record<string, number> {
  return {
    headersTimeout: l.headers_timeout_ms,
    requestTimeout: l.request_timeout_ms,
    keepAliveTimeout: l.keep_alive_timeout_ms,
    connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(l.headers_timeout_ms / 4))),
    maxHeaderSize: l.max_header_bytes,
    // HTTPS: a client that never finishes the TLS handshake is not yet an HTTP request, so bound it too.
    handshakeTimeout: l.headers_timeout_ms,
  }
}

/**
 * Connection limits, which Node only offers as properties of a created server. `clientOf` maps a peer
 * address to the client it is counted as (ratelimit/address_key.ts): an IPv6 host may take a new address
 * in its /64 for each connection, so counting exact addresses would let one host hold every connection.
 */
export function applyListenerLimits(server: Server, l: ListenerLimits, clientOf: (address: string) => string): void {
  server.maxHeadersCount = l.max_headers_count
  // Node then destroys a socket idle this long, unless the request in progress has a 'timeout' listener.
  server.timeout = l.idle_timeout_ms
  server.on('request', sparedWhileWorking(l.idle_timeout_ms))
  if (l.max_connections > 0) server.maxConnections = l.max_connections
  if (l.max_connections_per_client > 0) limitPerClient(server, l.max_connections_per_client, clientOf)
}

/**
 * The idle timeout is for a client that stops reading its answer, not for the broker still working one out:
 * a token request may wait on IAM (discovery, keys, introspection, the exchange, each up to
 * iam.timeout_seconds) with no byte moving, and cutting it then would drop an answer whose token is already
 * minted and audited. With this listener Node leaves the socket to it: a request received in full whose
 * answer has not begun keeps its connection for another round; anything else is closed as Node would.
 */
function sparedWhileWorking(idleMs: number): (req: IncomingMessage, res: ServerResponse) => void {
  function onIdle(this: ServerResponse, socket: Socket): void {
    if (this.req.complete && !this.headersSent) socket.setTimeout(idleMs)
    else socket.destroy()
  }
  return (_req, res) => { res.on('timeout', onIdle) }
}

/** Closes a new connection at once when its client already holds `max` open ones. */
function limitPerClient(server: Server, max: number, clientOf: (address: string) => string): void {
  const open = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress === undefined ? undefined : clientOf(socket.remoteAddress)
    if (address === undefined) return
    const n = open.get(address) ?? 0
    if (n >= max) {
      socket.destroy()
      return
    }
    open.set(address, n + 1)
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1
      if (left > 0) open.set(address, left)
      else open.delete(address)
    })
  })
}
