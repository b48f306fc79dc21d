/**
 * The Vault-compatible listener refuses what the main one refuses ahead of its routes (RFC 9112 §3.2: more
 * than one Host field line, or a Host that is not uri-host [":" port], MUST get a 400; more header lines than
 * http.max_headers_count get a 431, RFC 6585 §5), in Vault's error shape, `{"errors": [...]}`, since its client
 * is HTCondor's Vault credmon. Never "permission denied": on that text the credmon deletes the user's .top.
 */
import { connect } from 'node:net'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readOneHeaderLineMore } from '../../src/http/header_line_limit.ts'
import { createVaultApp } from '../../src/http/vault_app.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { vaultRequestListener } from '../../src/server.ts'

const MAX_HEADER_LINES = 20

let server: Server
let port: number
beforeAll(async () => {
  // No credential is known: a well-framed read is refused by the app itself (403), which shows it got there.
  const app = createVaultApp({ store: { credentialByVaultToken: async () => undefined }, jobTokens: {} as never, log: silentLogger })
  server = createServer(vaultRequestListener(app, MAX_HEADER_LINES, silentLogger))
  readOneHeaderLineMore(server, MAX_HEADER_LINES)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  port = (server.address() as AddressInfo).port
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

/** GET a credential path with `fields`; the answer's head lines and body, once the server closes or 3 s pass. */
function get(fields: string[]): Promise<{ status: string; head: string[]; body: string }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    const done = () => {
      const at = text.indexOf('\r\n\r\n')
      const head = text.slice(0, at).split('\r\n')
      resolve({ status: text.slice(9, 12), head: head.slice(1).map((l) => l.toLowerCase()), body: text.slice(at + 4) })
    }
    const timer = setTimeout(() => { socket.destroy(); done() }, 3_000)
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => { text += d })
    socket.on('error', () => undefined)
    socket.on('close', () => { clearTimeout(timer); done() })
    socket.write(['GET /v1/secret/oauth/creds/alice/cms HTTP/1.1', ...fields, 'X-Vault-Token: hvs.nobody', 'Connection: close', '', ''].join('\r\n'))
  })
}

describe('the Vault-compatible listener: requests refused for their framing, in Vault\'s shape', () => {
  it.each([
    ['two Host lines', ['Host: vault.example.org:8200', 'Host: evil.example.net']],
    ['a Host with a quote', ['Host: a"b']],
    ['a Host with a path', ['Host: vault.example.org/x']],
  ])('%s: 400, {"errors": [...]}, connection closed', async (_how, hosts) => {
    const got = await get(hosts)
    expect(got.status).toBe('400')
    expect(got.head).toContain('connection: close')
    const body = JSON.parse(got.body) as { errors: string[] }
    expect(body.errors).toHaveLength(1)
    expect(body.errors[0]).not.toBe('permission denied')
  })

  it('more header lines than http.max_headers_count: 431, {"errors": [...]}', async () => {
    // One line over the limit, with Host, X-Vault-Token and Connection: the most Node reads (readOneHeaderLineMore).
    const extra = Array.from({ length: MAX_HEADER_LINES - 2 }, (_, i) => `X-Filler-${i}: x`)
    const got = await get(['Host: vault.example.org:8200', ...extra])
    expect(got.status).toBe('431')
    expect((JSON.parse(got.body) as { errors: string[] }).errors).toHaveLength(1)
  })

  it.each(['vault.example.org:8200', 'VAULT.example.org', '[::1]:8200', '127.0.0.1'])('Host %s: reaches the read, which refuses the unknown token', async (host) => {
    const got = await get([`Host: ${host}`])
    expect(got.status).toBe('403')
    expect(JSON.parse(got.body)).toEqual({ errors: ['permission denied'] })
  })
})

describe('the Vault-compatible listener: a Host in the grammar that hono\'s adapter cannot make a URL of as sent', () => {
  // RFC 3986 allows these, so the Host guard passes them on; the adapter's URL would name another host (a
  // non-canonical IPv6 literal, a percent-encoded name) or none (a port over 65535), so it refuses them, and
  // on its own that refusal is a 400 with no body, which the credmon cannot read as Vault's answer.
  it.each(['[0:0:0:0:0:0:0:1]:8200', 'vault%2Eexample.org:8200', 'vault.example.org:99999'])('Host %s: 400, {"errors": [...]}, never "permission denied"', async (host) => {
    const got = await get([`Host: ${host}`])
    expect(got.status).toBe('400')
    const body = JSON.parse(got.body) as { errors: string[] }
    expect(body.errors).toHaveLength(1)
    expect(body.errors[0]).not.toContain('permission denied')
  })
})
