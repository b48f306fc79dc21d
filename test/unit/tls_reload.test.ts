import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { afterEach, describe, expect, it } from 'vitest'
import { createLogger } from '../../src/lib/logger.ts'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'
import { readTlsFiles, reloadTls } from '../../src/tls/tls_files.ts'
import { tempDir } from '../support/tmp.ts'

/** The certificate a new TLS connection is shown, or the handshake's error. */
function handshake(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().fingerprint256)
      s.end()
    })
    s.on('error', (err) => resolve(`error: ${err.message}`))
  })
}

const servers: Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => { s.closeAllConnections(); s.close(r) })
})

async function serving(certFile: string, keyFile: string): Promise<number> {
  const s = createServer(readTlsFiles(certFile, keyFile), (_q, res) => res.end())
  servers.push(s)
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return (s.address() as AddressInfo).port
}

/**
 * A reload must never swap in a certificate with a key that is not its own: OpenSSL keeps one certificate
 * and one key per key type, so an ECDSA certificate with an RSA key (a renewal that changed key type,
 * with the key file not yet replaced) is accepted by setSecureContext and then fails every handshake.
 */
describe('TLS reload keeps the pair in force unless the new one belongs together', () => {
  it('refuses an ECDSA certificate with an RSA key and keeps serving the old certificate', async () => {
    const dir = tempDir('ctb-tls-')
    const dev = await ensureDevTls(join(dir, 'tls'))
    const port = await serving(dev.certFile, dev.keyFile)
    const inForce = new X509Certificate(readFileSync(dev.certFile)).fingerprint256
    const lines: string[] = []
    const log = createLogger((l) => lines.push(l))

    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' })
    writeFileSync(dev.keyFile, rsa, { mode: 0o600 })
    const r = reloadTls(servers as never, { certFile: dev.certFile, keyFile: dev.keyFile }, log, 'sighup')

    expect(r.ok).toBe(false)
    expect(await handshake(port)).toBe(inForce)
    expect(lines.filter((l) => /TLS certificate reload refused/.test(l))).toHaveLength(1)
    expect(lines.join('')).not.toMatch(/TLS certificate reloaded/)
  })

  it('refuses a key of the same type that is not the certificate\'s, a truncated certificate and a readable key', async () => {
    const dir = tempDir('ctb-tls-')
    const dev = await ensureDevTls(join(dir, 'tls'))
    const other = await ensureDevTls(join(dir, 'other'))
    const port = await serving(dev.certFile, dev.keyFile)
    const inForce = new X509Certificate(readFileSync(dev.certFile)).fingerprint256
    const log = createLogger(() => {})
    const files = { certFile: dev.certFile, keyFile: dev.keyFile }
    const good = readFileSync(dev.certFile)

    writeFileSync(dev.keyFile, readFileSync(other.keyFile), { mode: 0o600 })
    expect(reloadTls(servers as never, files, log, 'sighup').ok).toBe(false)
    writeFileSync(dev.keyFile, readFileSync(other.keyFile).subarray(0, 0), { mode: 0o600 })
    expect(reloadTls(servers as never, files, log, 'sighup').ok).toBe(false)
    writeFileSync(dev.certFile, good.subarray(0, good.length >> 1))
    writeFileSync(dev.keyFile, readFileSync(other.keyFile), { mode: 0o600 })
    expect(reloadTls(servers as never, files, log, 'sighup').ok).toBe(false)
    writeFileSync(dev.certFile, readFileSync(other.certFile))
    chmodSync(dev.keyFile, 0o644)
    expect(reloadTls(servers as never, files, log, 'sighup').ok).toBe(false)
    expect(await handshake(port)).toBe(inForce)
  })

  it('refuses at start-up a certificate whose key is of another type', async () => {
    const dir = tempDir('ctb-tls-')
    const dev = await ensureDevTls(join(dir, 'tls'))
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' })
    writeFileSync(dev.keyFile, rsa, { mode: 0o600 })
    expect(() => readTlsFiles(dev.certFile, dev.keyFile)).toThrow(/does not match/)
  })
})
