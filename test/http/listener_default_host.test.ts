/**
 * A request without a Host (HTTP/1.0, where it is optional: RFC 9112 §3.2 requires it of HTTP/1.1 only) is
 * read as addressed to the listener's own host. A listener bound to an IPv6 address (`::`, every interface,
 * or `::1`) must serve it as one bound to 127.0.0.1 does: an IPv6 address names a host in a URL only in
 * brackets (RFC 3986 §3.2.2), and hono's adapter builds the request's URL from it.
 */
import { connect } from 'node:net'
import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import type { Exchange } from '../../src/http/routes/token.ts'
import { createVaultApp } from '../../src/http/vault_app.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { brokerRequestListener, vaultRequestListener } from '../../src/server.ts'
import { testDeps } from '../support/broker_deps.ts'

const FORM = 'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a'

const answering: Exchange = async (readForm) => {
  await readForm()
  return { access_token: 'via.x', issued_token_type: 'urn:ietf:params:oauth:token-type:jwt', token_type: 'Bearer', expires_in: 60 } as never
}

/** Sends `request` to a loopback server running `listener`; the status and body, once the server closes. */
async function send(listener: RequestListener, request: string): Promise<{ status: string; body: string }> {
  const server: Server = createServer(listener)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  try {
    return await new Promise((resolve) => {
      const socket = connect((server.address() as AddressInfo).port, '127.0.0.1')
      let text = ''
      const done = () => resolve({ status: text.slice(9, 12), body: text.slice(text.indexOf('\r\n\r\n') + 4) })
      const timer = setTimeout(() => { socket.destroy(); done() }, 3_000)
      socket.setEncoding('latin1')
      socket.on('data', (d: string) => { text += d })
      socket.on('error', () => undefined)
      socket.on('close', () => { clearTimeout(timer); done() })
      socket.write(request)
    })
  } finally {
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
}

describe('a request without Host, on a listener bound to an IPv6 address', () => {
  it.each(['127.0.0.1', '::', '::1'])('main listener on %s: GET /jwks is served', async (hostname) => {
    const listener = brokerRequestListener(createApp(testDeps({ exchange: answering })), answering, silentLogger, { hostname })
    const got = await send(listener, 'GET /jwks HTTP/1.0\r\n\r\n')
    expect(got.status).toBe('200')
  })

  it.each(['127.0.0.1', '::', '::1'])('main listener on %s: POST /token is served', async (hostname) => {
    const listener = brokerRequestListener(createApp(testDeps({ exchange: answering })), answering, silentLogger, { hostname })
    const got = await send(listener, `POST /token HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${FORM.length}\r\n\r\n${FORM}`)
    expect(got.status).toBe('200')
    expect((JSON.parse(got.body) as { access_token: string }).access_token).toBe('via.x')
  })

  it.each(['127.0.0.1', '::1'])('Vault-compatible listener on %s: the read reaches the app, which refuses the unknown token', async (hostname) => {
    const app = createVaultApp({ store: { credentialByVaultToken: async () => undefined }, jobTokens: {} as never, log: silentLogger })
    const got = await send(vaultRequestListener(app, 20, silentLogger, { hostname }), 'GET /v1/secret/oauth/creds/alice/cms HTTP/1.0\r\nX-Vault-Token: hvs.nobody\r\n\r\n')
    expect(got.status).toBe('403')
    expect(JSON.parse(got.body)).toEqual({ errors: ['permission denied'] })
  })

  // Node binds these as written; the URL parser serialises an IPv6 address in its shortest form and takes no
  // zone id (RFC 6874 zone ids are not in the WHATWG URL grammar), and hono's adapter refuses a host its URL
  // writes otherwise than it was given. So the address must reach the adapter already in the URL's form.
  it.each(['0:0:0:0:0:0:0:0', '0:0:0:0:0:0:0:1', '::FFFF:127.0.0.1', 'fe80::1%lo', '0.0.0.0', 'Broker.Example.org'])('main listener on %s: GET /jwks is served', async (hostname) => {
    const listener = brokerRequestListener(createApp(testDeps({ exchange: answering })), answering, silentLogger, { hostname })
    const got = await send(listener, 'GET /jwks HTTP/1.0\r\n\r\n')
    expect(got.status).toBe('200')
  })

  it.each(['0:0:0:0:0:0:0:1', 'fe80::1%lo'])('Vault-compatible listener on %s: the read reaches the app', async (hostname) => {
    const app = createVaultApp({ store: { credentialByVaultToken: async () => undefined }, jobTokens: {} as never, log: silentLogger })
    const got = await send(vaultRequestListener(app, 20, silentLogger, { hostname }), 'GET /v1/secret/oauth/creds/alice/cms HTTP/1.0\r\nX-Vault-Token: hvs.nobody\r\n\r\n')
    expect(got.status).toBe('403')
  })
})
