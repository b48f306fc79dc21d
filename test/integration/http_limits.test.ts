import { connect, type TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startE2e, type E2e } from '../support/broker_e2e.ts'

/** Timeouts far below the defaults, so slow clients are cut off within a test's patience. */
const HEADERS_MS = 400
const REQUEST_MS = 800
/** Node checks timeouts on a timer, a quarter of the headers timeout here; plus scheduling slack on a busy machine. */
const SLACK_MS = 1500

interface Outcome { closedAfterMs: number; reply: string }

/**
 * `serve` cuts off clients that send too slowly (slowloris) and bounds the connections one client holds.
 * Each test opens raw TLS connections to the running broker and trickles bytes on a timer; the timer and
 * the connection both end at a fixed deadline, so no test can hang.
 */
describe('the listener cuts off slow clients and bounds connections', () => {
  let e: E2e
  beforeAll(async () => {
    e = await startE2e({
      CTB_HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
      CTB_HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_MS),
      CTB_HTTP_MAX_CONNECTIONS_PER_CLIENT: '3',
    })
  })
  afterAll(async () => { await e?.close() })

  const open = () => new Promise<TLSSocket>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: e.broker.port, ca: e.ca, servername: 'localhost' }, () => resolve(s))
    s.once('error', reject)
  })

  /** Connects, calls `drive` every 100 ms until the server closes the socket or `deadlineMs` passes. */
  const trickle = async (first: string, drip: string, deadlineMs: number): Promise<Outcome> => {
    const s = await open()
    const t0 = Date.now()
    return new Promise<Outcome>((resolve) => {
      let reply = ''
      s.setEncoding('utf8')
      s.on('data', (d: string) => { reply += d })
      s.on('error', () => undefined)
      s.write(first)
      const timer = setInterval(() => { if (!s.destroyed && s.writable) s.write(drip) }, 100)
      const stop = setTimeout(() => s.destroy(), deadlineMs)
      s.once('close', () => {
        clearInterval(timer)
        clearTimeout(stop)
        resolve({ closedAfterMs: Date.now() - t0, reply })
      })
    })
  }

  it('closes a connection whose headers trickle in, with 408, within the headers timeout', async () => {
    const o = await trickle('GET /healthz HTTP/1.1\r\nHost: localhost\r\n', 'X-Slow: a\r\n', 10_000)
    expect(o.closedAfterMs).toBeLessThan(HEADERS_MS + SLACK_MS)
    expect(o.reply).toMatch(/^HTTP\/1\.1 408 /)
  })

  it('closes a POST /token whose body trickles in, within the request timeout', async () => {
    const o = await trickle('POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n', 'a', 10_000)
    expect(o.closedAfterMs).toBeGreaterThanOrEqual(REQUEST_MS - 100)
    expect(o.closedAfterMs).toBeLessThan(REQUEST_MS + SLACK_MS)
    expect(o.reply).not.toMatch(/^HTTP\/1\.1 200 /)
  })

  it('closes a connection that never sends a byte', async () => {
    const o = await trickle('', '', 10_000)
    expect(o.closedAfterMs).toBeLessThan(HEADERS_MS + SLACK_MS)
  })

  it('still serves a request that arrives in time', async () => {
    // connection: close, so no kept-alive socket counts against the per-client limit below.
    const r = await e.get('/healthz', { connection: 'close' })
    expect(r.status).toBe(200)
  })

  it('closes a client\'s connections beyond the per-client limit, and admits it again once one closes', async () => {
    const held = [await open(), await open(), await open()]
    try {
      const extra = await open().then(
        (s) => new Promise<boolean>((resolve) => {
          // The broker closes it at once; a connection it kept would still be open after the wait.
          s.once('close', () => resolve(true))
          s.on('error', () => undefined)
          setTimeout(() => { resolve(false); s.destroy() }, 1000)
        }),
        () => true,
      )
      expect(extra).toBe(true)
      await new Promise<void>((resolve) => { held.pop()!.once('close', () => resolve()).destroy() })
      // The broker sees the close asynchronously; give it a moment, bounded.
      await new Promise((r) => setTimeout(r, 100))
      const r = await e.get('/healthz', { connection: 'close' })
      expect(r.status).toBe(200)
    } finally {
      for (const s of held) s.destroy()
    }
  })
})
