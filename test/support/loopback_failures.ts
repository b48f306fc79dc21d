import { readFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { freePort } from '../../src/lib/free_port.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'

/**
 * Real transport failures on loopback, for tests of how IAM failures are reported. Nothing here leaves
 * the machine: `.invalid` names never resolve (RFC 6761 §6.4), so at most the local resolver is asked.
 */
export const UNRESOLVABLE_ISSUER = 'https://iam.ctb-test.invalid/'

/** A URL on a loopback port nobody listens on (connection refused). */
export async function refusedUrl(path = '/.well-known/openid-configuration'): Promise<string> {
  return `https://127.0.0.1:${await freePort()}${path}`
}

export interface LoopbackServer { url: string; close(): Promise<void> }

/** Accepts TCP connections and never answers: only a timeout ends the request. */
export async function silentServer(): Promise<LoopbackServer> {
  const sockets = new Set<Socket>()
  const server = createTcpServer((s) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  const port = await listen(server)
  return { url: `https://127.0.0.1:${port}`, close: () => closeServer(server, sockets) }
}

/**
 * HTTPS on loopback with a certificate from a CA the client does not trust: the TLS handshake fails on
 * verification (the answer it would give is never read).
 */
export async function untrustedHttpsServer(dir: string): Promise<LoopbackServer> {
  const tls = await ensureDevTls(dir)
  const sockets = new Set<Socket>()
  const server = createHttpsServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, (_req, res) => res.end('{}'))
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  // A client that rejects the certificate aborts the handshake; that is expected here.
  server.on('tlsClientError', () => {})
  const port = await listen(server)
  return { url: `https://127.0.0.1:${port}`, close: () => closeServer(server, sockets) }
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))
  })
}

function closeServer(server: Server, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy()
  return new Promise((resolve) => server.close(() => resolve()))
}

/** A logger that keeps what it is told, for assertions on log lines. */
export function recordingLogger(): Logger & { lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> } {
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = []
  const at = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => { lines.push({ level, msg, fields }) }
  return { lines, info: at('info'), warn: at('warn'), error: at('error') }
}
