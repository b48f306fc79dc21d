/**
 * Requests Node parses but the hono adapter cannot turn into a URL: the asterisk form (RFC 9110 §7.1
 * `OPTIONS *`, which some load balancers send as a health check), a Host header that is no host, a
 * backslash in the path. They are bad input like any other, so they get the API's error shape (RFC 6749
 * §5.2: 400 with `error` invalid_request, not cacheable; docs/errors.md), not the adapter's empty 400.
 */
import { request, createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { brokerRequestListener } from '../../src/server.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { fullApp } from '../support/full_app.ts'

let server: Server
let port: number
beforeAll(async () => {
  server = createServer(brokerRequestListener(fullApp(), async () => { throw new Error('not called') }, silentLogger))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  port = (server.address() as AddressInfo).port
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

function ask(method: string, path: string, host = `127.0.0.1:${port}`): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { host, connection: 'close' }, timeout: 3_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('timeout', () => req.destroy(new Error('no answer')))
    req.on('error', reject)
    req.end()
  })
}

describe('a request the adapter cannot build a URL for is answered in the API\'s error shape', () => {
  it.each([
    ['OPTIONS *', 'OPTIONS', '*', undefined],
    ['GET * ', 'GET', '*', undefined],
    ['a Host header that is no host', 'GET', '/jwks', 'a b'],
    ['a backslash in the path', 'GET', '/v1\\audit', undefined],
  ] as const)('%s', async (_how, method, path, host) => {
    const res = await ask(method, path, host)
    expect(res.status).toBe(400)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    expect(res.headers['cache-control']).toBe('no-store')
    expect(JSON.parse(res.body)).toEqual({ error: 'invalid_request', error_description: expect.any(String) })
  })

  it('a well-formed request on the same listener is still served', async () => {
    expect((await ask('GET', '/jwks')).status).toBe(200)
  })
})
