/**
 * The Vault-compatible listener over TLS (credentials.vault with a certificate): hono's adapter builds an
 * `https:` URL there, and its own refusals must still be answered in Vault's shape, a request without Host
 * still read as addressed to the listener's address.
 */
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { connect } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createVaultApp } from '../../src/http/vault_app.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { vaultRequestListener } from '../../src/server.ts'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'
import { tempDir } from '../support/tmp.ts'

let server: Server
let port: number
let ca: Buffer

beforeAll(async () => {
  const tls = await ensureDevTls(tempDir('ctb-vault-tls-'))
  ca = readFileSync(tls.caFile)
  const app = createVaultApp({ store: { credentialByVaultToken: async () => undefined }, jobTokens: {} as never, log: silentLogger })
  server = createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, vaultRequestListener(app, 20, silentLogger, { hostname: '::1' }))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  port = (server.address() as AddressInfo).port
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

/** Sends `request` over TLS; the status and body once the server closes (bounded by a timer). */
function send(request: string): Promise<{ status: string; body: string }> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', ca, servername: 'localhost', rejectUnauthorized: false })
    let text = ''
    const done = () => resolve({ status: text.slice(9, 12), body: text.slice(text.indexOf('\r\n\r\n') + 4) })
    const timer = setTimeout(() => { socket.destroy(); done() }, 3_000)
    socket.setEncoding('latin1')
    socket.on('secureConnect', () => socket.write(request))
    socket.on('data', (d: string) => { text += d })
    socket.on('error', () => undefined)
    socket.on('close', () => { clearTimeout(timer); done() })
  })
}

describe('the Vault-compatible listener over TLS', () => {
  it('a Host the adapter cannot make a URL of: 400 in Vault\'s shape, never "permission denied"', async () => {
    const got = await send('GET /v1/secret/oauth/creds/alice/cms HTTP/1.1\r\nHost: [0:0:0:0:0:0:0:1]:8200\r\nX-Vault-Token: hvs.x\r\nConnection: close\r\n\r\n')
    expect(got.status).toBe('400')
    const body = JSON.parse(got.body) as { errors: string[] }
    expect(body.errors).toHaveLength(1)
    expect(body.errors[0]).not.toContain('permission denied')
  })

  it('a request without Host on a listener bound to ::1 reaches the app', async () => {
    const got = await send('GET /v1/secret/oauth/creds/alice/cms HTTP/1.0\r\nX-Vault-Token: hvs.x\r\n\r\n')
    expect(got.status).toBe('403')
    expect(JSON.parse(got.body)).toEqual({ errors: ['permission denied'] })
  })
})
