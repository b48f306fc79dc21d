import { STATUS_CODES, type Server, type ServerResponse } from 'node:http'
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
  // Node's parser gives one code for too many bytes and too many lines (HPE_HEADER_OVERFLOW): name both.
  431: 'the request line and headers are larger than allowed, or there are more header lines than allowed',
}

/**
 * The answer to a request refused for its HTTP framing (400, 408, 413, 431): OAuth error JSON, connection
 * closed. `description` for a refusal more specific than its status says (a repeated Host).
 */
export function parserRefusal(status: number, description = DESCRIPTION_OF[status]): { headers: Record<string, string>; body: string } {
  const body = JSON.stringify({ error: 'invalid_request', error_description: description })
  return { headers: { ...NO_STORE_HEADERS, 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close' }, body }
}

/** A refusal's status line fields and body, in the shape a listener's clients read. */
export type FramingRefusal = (status: number, description?: string) => { headers: Record<string, string>; body: string }

/**
 * parserRefusal in Vault's error shape, `{"errors": [...]}`, for the Vault-compatible listener: its client,
 * HTCondor's Vault credmon, reads that shape and no other.
 */
export function vaultParserRefusal(status: number, description = DESCRIPTION_OF[status]): { headers: Record<string, string>; body: string } {
  const body = JSON.stringify({ errors: [description] })
  return { headers: { ...NO_STORE_HEADERS, 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close' }, body }
}

/**
 * Requests Node's HTTP parser refuses never reach the app: an unknown method, a malformed request line,
 * conflicting Content-Length, headers over the size limit, a request that timed out. Node's own answer
 * is a status line and no body; this one is the API's error shape (RFC 6749 §5.2), not cacheable, with
 * the connection closed as Node would. Written under Node's own condition (no answer part-way out on the
 * socket), so it never lands in the middle of an answer already begun.
 */
export function answerClientErrors(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex & { bytesWritten?: number }) => {
    if (socket.writable && err.code !== 'ECONNRESET' && noAnswerBegun(socket)) {
      const status = STATUS_OF[err.code ?? ''] ?? 400
      const { headers, body } = parserRefusal(status)
      socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`)
    }
    socket.destroy()
  })
}

/**
 * Whether an answer written now would be the next thing the client reads. Nothing written yet is the easy
 * case; a kept-alive connection whose earlier answers are complete, or a request Node sent `100 Continue`
 * to, has bytes behind it and still qualifies (Node answers both, and clients reuse connections; old curl
 * sends Expect: 100-continue for any body over 1 KiB). Node's default handler decides by the response
 * attached to the socket (`_httpMessage`, set for as long as a response owns the socket): answer unless
 * its head has gone out. That field is Node's, not documented: if a future Node drops it, a socket that
 * has carried bytes gets no answer, which never corrupts one.
 */
function noAnswerBegun(socket: Duplex & { bytesWritten?: number }): boolean {
  if (socket.bytesWritten === 0) return true
  if (!('_httpMessage' in socket)) return false
  const attached = (socket as { _httpMessage?: ServerResponse | null })._httpMessage
  return attached === null || attached === undefined || !attached.headersSent
}
