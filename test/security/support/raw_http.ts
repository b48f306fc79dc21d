/**
 * HTTP/1.1 by hand over a loopback TCP socket, so tests can send what no well-behaved client would:
 * odd paths, duplicated headers, header floods, bodies that trickle in. Every call is bounded by a
 * timeout; a connection the server closes without a response is reported as `closed`.
 */
import { connect } from 'node:net'
import { parseReplyText, type Reply } from './security_broker.ts'

export type RawOutcome = ({ kind: 'reply' } & Reply) | { kind: 'closed'; bytes: number } | { kind: 'timeout' }

export interface RawRequest {
  /** The whole head (request line and headers), without the final blank line. */
  head: string
  /** Body chunks, written with `gapMs` between them. */
  chunks?: (string | Buffer)[]
  gapMs?: number
  timeoutMs?: number
}

export function rawExchange(port: number, r: RawRequest): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const received: Buffer[] = []
    let done = false
    const finish = (o: RawOutcome) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve(o)
    }
    const timer = setTimeout(() => finish(parse(received) ?? { kind: 'timeout' }), r.timeoutMs ?? 5_000)
    socket.on('data', (c: Buffer) => {
      received.push(c)
      const reply = parse(received)
      if (reply) finish(reply)
    })
    socket.on('error', () => finish(parse(received) ?? { kind: 'closed', bytes: Buffer.concat(received).length }))
    socket.on('close', () => finish(parse(received) ?? { kind: 'closed', bytes: Buffer.concat(received).length }))
    socket.on('connect', async () => {
      socket.write(`${r.head}\r\n\r\n`)
      for (const c of r.chunks ?? []) {
        if (done || socket.destroyed) return
        if (r.gapMs) await new Promise((s) => setTimeout(s, r.gapMs))
        if (done || socket.destroyed) return
        socket.write(c)
      }
    })
  })
}

/** A complete response once head and Content-Length body (or a close-delimited body) are in. */
function parse(chunks: Buffer[]): RawOutcome | undefined {
  const all = Buffer.concat(chunks)
  const end = all.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const head = parseHead(all.subarray(0, end).toString('latin1'))
  if (!head) return undefined
  const { status, headers } = head
  const body = all.subarray(end + 4)
  const length = headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined
  if (length !== undefined && body.length < length) return undefined
  if (length === undefined && headers['transfer-encoding'] === 'chunked') {
    if (!body.includes('\r\n0\r\n\r\n') && !body.subarray(0, 5).equals(Buffer.from('0\r\n\r\n'))) return undefined
    return { kind: 'reply', ...parseReplyText(status, headers, dechunk(body)) }
  }
  return { kind: 'reply', ...parseReplyText(status, headers, body.subarray(0, length ?? body.length).toString('utf8')) }
}

/** A response head (status line and headers, without the blank line); header names in lower case. */
export function parseHead(head: string): { status: number; headers: Record<string, string> } | undefined {
  const [statusLine, ...lines] = head.split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')
  if (!m) return undefined
  const headers: Record<string, string> = {}
  for (const l of lines) {
    const i = l.indexOf(':')
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
  }
  return { status: Number(m[1]), headers }
}

function dechunk(body: Buffer): string {
  const out: Buffer[] = []
  let at = 0
  for (let n = 0; n < 10_000 && at < body.length; n++) {
    const eol = body.indexOf('\r\n', at)
    if (eol < 0) break
    const size = parseInt(body.subarray(at, eol).toString('latin1'), 16)
    if (!size) break
    out.push(body.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
  return Buffer.concat(out).toString('utf8')
}

/** A POST with the given body through the socket, Connection: close; the caller chooses the content type. */
export function rawPost(port: number, path: string, body: string, headers: Record<string, string> = {}, timeoutMs = 5_000): Promise<RawOutcome> {
  const h = { host: '127.0.0.1', 'content-length': String(Buffer.byteLength(body)), connection: 'close', ...headers }
  const head = [`POST ${path} HTTP/1.1`, ...Object.entries(h).map(([k, v]) => `${k}: ${v}`)].join('\r\n')
  return rawExchange(port, { head, chunks: [body], timeoutMs })
}

export function rawGet(port: number, path: string, headers: Record<string, string> = {}, timeoutMs = 5_000): Promise<RawOutcome> {
  const h = { host: '127.0.0.1', connection: 'close', ...headers }
  return rawExchange(port, { head: [`GET ${path} HTTP/1.1`, ...Object.entries(h).map(([k, v]) => `${k}: ${v}`)].join('\r\n'), timeoutMs })
}
