/**
 * The 'clientError' answer (src/http/client_error.ts) on a connection that has already carried bytes.
 * Node's own handler answers a request its parser refuses whenever no answer is part-way out on the socket
 * (the response attached to it, if any, has not sent its head): a kept-alive connection whose first request
 * was answered, and a request Node sent `100 Continue` to, still get a status line. Clients reuse
 * connections (undici, a Python requests Session) and old curl sends `Expect: 100-continue` for any body
 * over 1 KiB (a subject token is larger), so those must keep getting an answer, in the API's shape. An
 * answer whose head has gone out must never get bytes of another appended.
 * Statuses as Node chooses them: 400 (RFC 9110 §15.5.1), 408 (§15.5.9).
 */
import { createServer, type Server } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { answerClientErrors } from '../../src/http/client_error.ts'

let server: Server | undefined
afterEach(async () => {
  server?.closeAllConnections()
  await new Promise((r) => server?.close(r))
  server = undefined
})

/** A listener as the broker's: 'ok' to GET /, a head and half a body to GET /slow (the rest never comes). */
async function listen(): Promise<number> {
  server = createServer({ headersTimeout: 400, requestTimeout: 800, connectionsCheckingInterval: 50 }, (req, res) => {
    if (req.url === '/slow') {
      res.writeHead(200, { 'Content-Length': '10' })
      res.write('half:')
      return
    }
    req.resume()
    req.on('end', () => res.end('ok'))
  })
  answerClientErrors(server)
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
  return (server.address() as AddressInfo).port
}

/** Writes each step after `gapMs`, then collects what comes back until the server closes (bounded). */
function converse(port: number, steps: string[], gapMs = 100, limitMs = 3_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const got: Buffer[] = []
    const done = () => { clearTimeout(timer); socket.destroy(); resolve(Buffer.concat(got).toString('latin1')) }
    const timer = setTimeout(done, limitMs)
    socket.on('data', (d: Buffer) => got.push(d))
    socket.on('error', done)
    socket.on('close', done)
    steps.forEach((s, i) => setTimeout(() => { if (!socket.destroyed) socket.write(s) }, i * gapMs))
  })
}

/** The last answer on the connection: its status and JSON body. */
function lastAnswer(text: string): { status: number; json: unknown } {
  const at = text.lastIndexOf('HTTP/1.1 ')
  if (at < 0) return { status: 0, json: undefined }
  const answer = text.slice(at)
  const body = answer.slice(answer.indexOf('\r\n\r\n') + 4)
  let json: unknown
  try { json = JSON.parse(body) } catch { json = undefined }
  return { status: Number(answer.slice(9, 12)), json }
}

describe('requests Node refuses on a connection that already carried bytes', () => {
  it('a kept-alive connection: the second request, not HTTP, still gets 400 invalid_request', async () => {
    const port = await listen()
    const text = await converse(port, ['GET / HTTP/1.1\r\nhost: x\r\n\r\n', 'BREW / HTTP/1.1\r\nhost: x\r\n\r\n'])
    expect(text.startsWith('HTTP/1.1 200 ')).toBe(true)
    expect(lastAnswer(text)).toEqual({ status: 400, json: { error: 'invalid_request', error_description: expect.any(String) } })
  })

  it('a kept-alive connection: the second request\'s headers too slow get 408 invalid_request', async () => {
    const port = await listen()
    const text = await converse(port, ['GET / HTTP/1.1\r\nhost: x\r\n\r\n', 'GET / HTTP/1.1\r\nhost: x\r\n'])
    expect(text.startsWith('HTTP/1.1 200 ')).toBe(true)
    expect(lastAnswer(text)).toEqual({ status: 408, json: { error: 'invalid_request', error_description: expect.any(String) } })
  })

  it('after 100 Continue, a malformed chunk gets 400 invalid_request', async () => {
    const port = await listen()
    const text = await converse(port, ['POST / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n', 'zz\r\nnot a chunk\r\n'])
    expect(text.startsWith('HTTP/1.1 100 Continue\r\n')).toBe(true)
    expect(lastAnswer(text)).toEqual({ status: 400, json: { error: 'invalid_request', error_description: expect.any(String) } })
  })

  it('an answer whose head is out gets nothing appended when the next request is refused', async () => {
    const port = await listen()
    const text = await converse(port, ['GET /slow HTTP/1.1\r\nhost: x\r\n\r\n', 'BREW / HTTP/1.1\r\nhost: x\r\n\r\n'])
    expect(text.startsWith('HTTP/1.1 200 ')).toBe(true)
    expect(text.endsWith('\r\n\r\nhalf:')).toBe(true)
  })
})
