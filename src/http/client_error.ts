import { STATUS_CODES, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { NO_STORE_HEADERS } from './oauth_error_response.ts'

/** Node's parser error codes that have their own status; anything else it refuses is a 400. */
const STATUS_OF: Record<string, number> = {
  HPE_HEADER_OVERFLOW: 431,
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 413,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
}

/** Why, in words a client can act on; never the parser's own message (it quotes the offending bytes). */
const DESCRIPTION_OF: Record<number, string> = {
  400: 'the request is not well-formed HTTP/1.1',
  408: 'the request did not arrive in time',
  413: 'chunk extensions larger than allowed',
  431: 'the request line and headers are larger than allowed',
}

/**
 * Requests Node's HTTP parser refuses never reach the app: an unknown method, a malformed request line,
 * conflicting Content-Length, headers over the size limit, a request that timed out. Node's own answer
 * is a status line and no body; this one is the API's error shape (RFC 6749 §5.2), not cacheable, with
 * the connection closed as Node would. Written only when nothing has gone out on the socket yet (Node's
 * own condition), so it never lands in the middle of an answer already begun.
 */
export function answerClientErrors(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex & { bytesWritten?: number }) => {
    if (socket.writable && socket.bytesWritten === 0 && err.code !== 'ECONNRESET') {
      const status = STATUS_OF[err.code ?? ''] ?? 400
      const body = JSON.stringify({ error: 'invalid_request', error_description: DESCRIPTION_OF[status] })
      const headers = { ...NO_STORE_HEADERS, 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close' }
      socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`)
    }
    socket.destroy()
  })
}
