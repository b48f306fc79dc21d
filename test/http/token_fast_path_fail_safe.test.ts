/**
 * The fast path answers POST /token from a promise nobody awaits (token_fast_path.ts). If something in it
 * throws outside the exchange's own error handling (the logger, the access log), that promise rejects, and
 * Node 24 ends the process on an unhandled rejection: one bad log line would take the broker down, where the
 * hono path answers 500. These cases make the logger throw and hold the fast path to: an answer if none
 * was sent (500 server_error, RFC 6749 §5.2's shape), no unhandled rejection, and a listener that serves on.
 */
import { connect } from 'node:net'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import type { Exchange } from '../../src/http/routes/token.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { brokerRequestListener } from '../../src/server.ts'
import { testDeps } from '../support/broker_deps.ts'

const FORM = 'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a'
const TOKEN = { access_token: 'x.y.z', issued_token_type: 'urn:ietf:params:oauth:token-type:jwt', token_type: 'Bearer', expires_in: 60 }

let rejections: unknown[]
const onRejection = (reason: unknown) => { rejections.push(reason) }
beforeEach(() => { rejections = []; process.on('unhandledRejection', onRejection) })
afterEach(() => { process.off('unhandledRejection', onRejection) })

async function listening(exchange: Exchange, log: Logger, logRequests: boolean): Promise<{ server: Server; port: number }> {
  const server = createServer(brokerRequestListener(createApp(testDeps({ exchange, log })), exchange, log, { logRequests }))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, port: (server.address() as AddressInfo).port }
}

async function stop(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
}

/** One POST /token with Connection: close; what came back before the server closed or 3 s passed. */
function post(port: number, path = '/token'): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => { socket.destroy(); resolve(text) }, 3_000)
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => { text += d })
    socket.on('error', () => undefined)
    socket.on('close', () => { clearTimeout(timer); resolve(text) })
    socket.write([`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${FORM.length}`, 'Connection: close', '', ''].join('\r\n') + FORM)
  })
}

/** Lets a rejection nobody handles reach process 'unhandledRejection' before it is looked at. */
const settle = () => new Promise((r) => setTimeout(r, 50))

describe('POST /token fast path: a fault outside the exchange', () => {
  // The same request with a query string goes through hono, whose adapter answers a throw from its error
  // handler with a bare 500 of its own: the same fault must get the API's shape there too.
  it.each([['fast path', '/token'], ['hono', '/token?via=hono']])('%s: a logger that throws while an internal error is reported: answered 500 server_error, nothing unhandled', async (_via, path) => {
    const thrown: string[] = []
    const log: Logger = { info: () => undefined, warn: () => undefined, error: (msg) => { thrown.push(msg); throw new Error('log destination gone') } }
    const failing: Exchange = async (readForm) => { await readForm(); throw new Error('a bug in the exchange') }
    const { server, port } = await listening(failing, log, false)
    try {
      const got = await post(port, path)
      expect(got).toMatch(/^HTTP\/1\.1 500 /)
      expect(JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4))).toEqual({ error: 'server_error' })
      await settle()
      expect(rejections).toEqual([])
    } finally {
      await stop(server)
    }
  })

  // On hono's path the access line is written after the response is built, not sent: a throw there would
  // turn a token already issued and audited into a 500, and the caller would have to ask again.
  it.each([['fast path', '/token'], ['hono', '/token?via=hono']])('%s: an access log that throws after the answer: the token was answered, nothing unhandled, the listener serves on', async (_via, path) => {
    let faults = 0
    const log: Logger = {
      info: (msg) => { if (msg === 'request') throw new Error('log destination gone') },
      warn: () => undefined,
      error: () => { faults++ },
    }
    const ok: Exchange = async (readForm) => { await readForm(); return TOKEN as never }
    const { server, port } = await listening(ok, log, true)
    try {
      for (let i = 0; i < 2; i++) {
        const got = await post(port, path)
        expect(got).toMatch(/^HTTP\/1\.1 200 /)
        expect(JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4))).toEqual(TOKEN)
      }
      await settle()
      expect(rejections).toEqual([])
      // Each fault is reported once, through the logger's error level.
      expect(faults).toBe(2)
    } finally {
      await stop(server)
    }
  })

  // The answer may be a token, issued and audited: the one line that says its access line is missing names
  // the request id the exchange audited it under, so an operator can find the record.
  it.each([['fast path', '/token'], ['hono', '/token?via=hono']])('%s: an access log that throws: the fault report names the request id the exchange saw', async (_via, path) => {
    const reported: Array<Record<string, unknown> | undefined> = []
    const log: Logger = {
      info: (msg) => { if (msg === 'request') throw new Error('log destination gone') },
      warn: () => undefined,
      error: (_msg, fields) => { reported.push(fields) },
    }
    const seen: string[] = []
    const ok: Exchange = async (readForm, ctx) => { await readForm(); seen.push(ctx.requestId); return TOKEN as never }
    const { server, port } = await listening(ok, log, true)
    try {
      expect(await post(port, path)).toMatch(/^HTTP\/1\.1 200 /)
      await settle()
      expect(seen).toHaveLength(1)
      expect(reported).toHaveLength(1)
      expect(reported[0]?.requestId).toBe(seen[0])
    } finally {
      await stop(server)
    }
  })
})
