import { request } from 'node:https'
import type { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { exchangeForm, IDTOKEN, startE2e, type E2e } from '../support/broker_e2e.ts'

interface Reply { status: number; headers: Record<string, string | undefined>; body: Record<string, unknown> }

const COMPARED_HEADERS = ['content-type', 'cache-control', 'pragma', 'www-authenticate', 'allow'] as const

/**
 * `serve` answers POST /token on Node's request/response (src/http/token_fast_path.ts), ahead of the hono
 * app that app.request() and the conformance suite exercise. Both must answer alike: the same requests go
 * to the running broker's socket and to a hono app built on the same services, and status, headers and
 * bodies (minus the fresh token) must agree.
 */
describe('POST /token on the socket answers exactly like the hono route', () => {
  let e: E2e
  let app: Hono
  let robot: string
  beforeAll(async () => {
    e = await startE2e()
    const { config, keys, exchange } = e.broker.services
    app = createApp({ config, keys, log: silentLogger, readiness: async () => ({}), exchange })
    robot = await e.robot('ctb-cloud-a-provisioner')
  })
  afterAll(async () => { await e?.close() })

  const socket = (method: string, path: string, body: string | undefined, headers: Record<string, string>, chunked = false) =>
    new Promise<Reply>((resolve, reject) => {
      const req = request(`${e.broker.url}${path}`, { method, ca: e.ca, headers, timeout: 10_000 }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c) => { text += c })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: JSON.parse(text) as Record<string, unknown> }))
      })
      req.on('timeout', () => req.destroy(new Error('timeout')))
      req.on('error', reject)
      if (chunked && body) { req.write(body.slice(0, 10)); req.end(body.slice(10)) } else req.end(body)
    })
  const viaHono = async (method: string, path: string, body: string | undefined, headers: Record<string, string>): Promise<Reply> => {
    const res = await app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) })
    return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.json() as Record<string, unknown> }
  }
  const form = (f: Record<string, string | string[]>) => {
    const p = new URLSearchParams()
    for (const [k, v] of Object.entries(f)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x)
    return p.toString()
  }
  const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
  const expectSame = (a: Reply, b: Reply) => {
    expect(a.status).toBe(b.status)
    for (const h of COMPARED_HEADERS) expect(a.headers[h], h).toBe(b.headers[h])
    const strip = (r: Reply) => ({ ...r.body, ...(typeof r.body.access_token === 'string' ? { access_token: 'TOKEN' } : {}) })
    expect(strip(a)).toEqual(strip(b))
  }

  it.each([
    ['a startd IDTOKEN', () => form(exchangeForm(robot, 'startd', { requested_token_type: IDTOKEN, host: 'ep-17.cloud-a.example.org' })), FORM, 200],
    ['a role no rule grants', () => form(exchangeForm(robot, 'central-manager', { host: 'cm.cloud-a.example.org' })), FORM, 400],
    ['a scope wider than the grant', () => form(exchangeForm(robot, 'startd', { host: 'ep-17.cloud-a.example.org', scope: 'condor:/ADMINISTRATOR' })), FORM, 400],
    ['a JSON body', () => JSON.stringify(exchangeForm(robot, 'startd')), { 'content-type': 'application/json' }, 400],
    ['no content type', () => form(exchangeForm(robot, 'startd')), {}, 400],
    ['no grant_type', () => form({ subject_token: robot }), FORM, 400],
    ['another grant_type', () => form({ grant_type: 'client_credentials' }), FORM, 400],
    ['a repeated parameter', () => form({ ...exchangeForm(robot, 'startd'), role: ['startd', 'schedd'] }), FORM, 400],
    ['a forged subject token', () => form(exchangeForm(`${robot.slice(0, -4)}AAAA`, 'startd')), FORM, 400],
    ['an oversized body', () => form({ ...exchangeForm(robot, 'startd'), pad: 'x'.repeat(40_000) }), FORM, 400],
  ])('%s', async (_name, body, headers, status) => {
    const b = body()
    const [fast, hono] = [await socket('POST', '/token', b, headers), await viaHono('POST', '/token', b, headers)]
    expect(fast.status, JSON.stringify(fast.body)).toBe(status)
    expectSame(fast, hono)
    expect(fast.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('refuses an oversized chunked body (no Content-Length) the same way', async () => {
    const b = form({ ...exchangeForm(robot, 'startd'), pad: 'x'.repeat(40_000) })
    const fast = await socket('POST', '/token', b, { ...FORM, 'transfer-encoding': 'chunked' }, true)
    expect(fast.status).toBe(400)
    expectSame(fast, await viaHono('POST', '/token', b, FORM))
  })

  it('keys audit records by its own request id, never the caller\'s X-Request-Id', async () => {
    const b = form(exchangeForm(robot, 'startd', { host: 'ep-17.cloud-a.example.org' }))
    const ids: string[] = []
    // Two callers sending the same X-Request-Id must still get two distinct audit request ids.
    for (let i = 0; i < 2; i++) {
      const res = await socket('POST', '/token', b, { ...FORM, 'x-request-id': 'pilot-run-42.a_b' })
      expect(res.status).toBe(200)
      const rec = (await e.broker.services.store.query({ limit: 1 })).records[0]!
      expect(rec.event).toMatchObject({ clientAddress: '127.0.0.1', decision: 'allow' })
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
      expect(rec.event.requestId).toBe(res.headers['x-request-id'])
      ids.push(rec.event.requestId!)
    }
    expect(ids[0]).not.toBe(ids[1])
    expect(ids).not.toContain('pilot-run-42.a_b')
  })

  it('leaves other methods and a query string to the hono app', async () => {
    const get = await socket('GET', '/token', undefined, {})
    expectSame(get, await viaHono('GET', '/token', undefined, {}))
    expect(get.status).toBe(405)
    expect(get.headers.allow).toBe('POST')
    expect(get.body).toMatchObject({ error: 'invalid_request' })
    const b = form(exchangeForm(robot, 'startd', { host: 'ep-17.cloud-a.example.org' }))
    const withQuery = await socket('POST', '/token?trace=1', b, FORM)
    expect(withQuery.status).toBe(200)
    expectSame(withQuery, await viaHono('POST', '/token?trace=1', b, FORM))
  })
})
