import 'reflect-metadata'
import { createPrivateKey, generateKeyPairSync, type KeyObject, webcrypto, X509Certificate } from 'node:crypto'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { connect } from 'node:tls'
import * as x509 from '@peculiar/x509'
import { spawnSync } from 'node:child_process'
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

/** A self-signed localhost certificate valid from `from` to `to` (epoch ms), and its key, as PEM. */
async function certificateValid(from: number, to: number): Promise<{ cert: string; key: string }> {
  x509.cryptoProvider.set(webcrypto as unknown as Crypto)
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=localhost', notBefore: new Date(from), notAfter: new Date(to), keys: keys as never, signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'localhost' }])],
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64')
  return { cert: cert.toString('pem'), key: `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n` }
}

/**
 * An admin who renewed the certificate and sent SIGHUP reads the log to see that the renewed one is served,
 * not only that some file was read: the line names the certificate as `openssl x509 -noout -serial -enddate
 * -fingerprint -sha256` does (serial, end of validity, SHA-256 fingerprint).
 */
it('names the certificate it swapped in: serial, end of validity and fingerprint', async () => {
  const dir = tempDir('ctb-tls-')
  const dev = await ensureDevTls(join(dir, 'tls'))
  await serving(dev.certFile, dev.keyFile)
  const lines: string[] = []
  const notAfter = Math.floor(Date.now() / 1000) * 1000 + 20 * 86_400_000
  const pair = await certificateValid(Date.now() - 60_000, notAfter)
  writeFileSync(dev.certFile, pair.cert)
  writeFileSync(dev.keyFile, pair.key, { mode: 0o600 })
  reloadTls(servers as never, { certFile: dev.certFile, keyFile: dev.keyFile }, createLogger((l) => lines.push(l)), 'sighup')
  const line = JSON.parse(lines.find((l) => /TLS certificate reloaded/.test(l))!) as Record<string, unknown>
  expect(line).toMatchObject({ serial: '01', notAfter: new Date(notAfter).toISOString(), fingerprint256: new X509Certificate(pair.cert).fingerprint256 })
})

/**
 * The README's renewal check, literally: the admin compares the line with `openssl x509 -noout -serial
 * -enddate -fingerprint -sha256 -in tls.crt`. The expected values are openssl's, not node:crypto's (which
 * the code under test reads them with), for a certificate openssl made, with a serial whose first byte has
 * its high bit set (DER pads it with a zero byte, which openssl does not print).
 */
it('names the certificate it swapped in as openssl x509 prints it', async () => {
  const dir = tempDir('ctb-tls-')
  const dev = await ensureDevTls(join(dir, 'tls'))
  await serving(dev.certFile, dev.keyFile)
  const openssl = (args: string[]) => {
    const r = spawnSync('openssl', args, { encoding: 'utf8' })
    if (r.error || r.status !== 0) throw new Error(`this test needs the openssl CLI: ${r.error?.message ?? r.stderr}`)
    return r.stdout
  }
  const key = join(dir, 'renewed.key')
  const cert = join(dir, 'renewed.crt')
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
    '-days', '20', '-subj', '/CN=localhost', '-set_serial', '0xC0FFEE01'])
  chmodSync(key, 0o600)
  writeFileSync(dev.certFile, readFileSync(cert))
  writeFileSync(dev.keyFile, readFileSync(key), { mode: 0o600 })
  const printed = openssl(['x509', '-noout', '-serial', '-enddate', '-fingerprint', '-sha256', '-in', dev.certFile])
  const field = (re: RegExp) => printed.match(re)![1]!.trim()
  const lines: string[] = []
  reloadTls(servers as never, { certFile: dev.certFile, keyFile: dev.keyFile }, createLogger((l) => lines.push(l)), 'sighup')
  const line = JSON.parse(lines.find((l) => /TLS certificate reloaded/.test(l))!) as Record<string, unknown>
  expect(field(/^serial=(.+)$/m)).toBe('C0FFEE01')
  expect(line).toMatchObject({
    serial: field(/^serial=(.+)$/m),
    fingerprint256: field(/^sha256 Fingerprint=(.+)$/im),
    // openssl prints "Dec 21 16:02:13 2026 GMT"; the log gives the same instant in ISO 8601.
    notAfter: new Date(field(/^notAfter=(.+)$/m)).toISOString(),
  })
})

/**
 * A reload is a renewal: a certificate that has already expired (an old backup copied back, the wrong file
 * from a renewal directory), or is not valid yet, would make every verifying client refuse the broker while
 * the one in force is still good. Refused like a mismatched pair, with the reason in the one log line.
 */
describe('TLS reload refuses a certificate outside its validity period', () => {
  it.each([
    ['expired', -2 * 86_400_000, -86_400_000, /expired/],
    ['not yet valid', 86_400_000, 2 * 86_400_000, /not valid before/],
  ] as const)('%s', async (_name, from, to, reason) => {
    const dir = tempDir('ctb-tls-')
    const dev = await ensureDevTls(join(dir, 'tls'))
    const port = await serving(dev.certFile, dev.keyFile)
    const inForce = new X509Certificate(readFileSync(dev.certFile)).fingerprint256
    const lines: string[] = []
    const pair = await certificateValid(Date.now() + from, Date.now() + to)
    writeFileSync(dev.certFile, pair.cert)
    writeFileSync(dev.keyFile, pair.key, { mode: 0o600 })
    const r = reloadTls(servers as never, { certFile: dev.certFile, keyFile: dev.keyFile }, createLogger((l) => lines.push(l)), 'sighup')
    expect(r.ok).toBe(false)
    expect(r.ok ? '' : r.error).toMatch(reason)
    expect(await handshake(port)).toBe(inForce)
    expect(lines.filter((l) => /TLS certificate reload refused/.test(l))).toHaveLength(1)
  })
})

/**
 * A certificate issued by a CA whose clock runs a few seconds ahead of the broker's starts a few seconds in
 * the future. Refusing it lost the renewal for good: nothing retries the reload, so with short-lived
 * certificates the one in force ran out while the renewed one sat on disk. Taking it at once would have
 * every client with a right clock refuse the broker until its start. The certificate in force stays until
 * the new one starts, and the new one is served from then on; one far in the future is still refused.
 */
describe('TLS reload of a certificate that starts within the clock skew allowed', () => {
  it('keeps the certificate in force until the new one starts, then serves the new one', async () => {
    const dir = tempDir('ctb-tls-')
    const dev = await ensureDevTls(join(dir, 'tls'))
    const port = await serving(dev.certFile, dev.keyFile)
    const inForce = new X509Certificate(readFileSync(dev.certFile)).fingerprint256
    const lines: string[] = []
    // X.509 times have whole seconds: start 3 s ahead, on a second boundary.
    const startsAt = Math.ceil(Date.now() / 1000) * 1000 + 3_000
    const pair = await certificateValid(startsAt, startsAt + 86_400_000)
    const renewed = new X509Certificate(pair.cert).fingerprint256
    writeFileSync(dev.certFile, pair.cert)
    writeFileSync(dev.keyFile, pair.key, { mode: 0o600 })
    const r = reloadTls(servers as never, { certFile: dev.certFile, keyFile: dev.keyFile }, createLogger((l) => lines.push(l)), 'sighup')
    expect(r.ok).toBe(true)
    expect(lines.join('')).not.toMatch(/TLS certificate reload refused/)
    expect(await handshake(port)).toBe(inForce)
    for (let i = 0; i < 100 && Date.now() < startsAt + 500; i++) await new Promise((res) => setTimeout(res, 100))
    expect(await handshake(port)).toBe(renewed)
  }, 15_000)

  it('drops a pending certificate when a later reload brings another', async () => {
    const dir = tempDir('ctb-tls-')
    const dev = await ensureDevTls(join(dir, 'tls'))
    const port = await serving(dev.certFile, dev.keyFile)
    const good = { cert: readFileSync(dev.certFile), key: readFileSync(dev.keyFile) }
    const inForce = new X509Certificate(good.cert).fingerprint256
    const log = createLogger(() => {})
    const files = { certFile: dev.certFile, keyFile: dev.keyFile }
    const startsAt = Math.ceil(Date.now() / 1000) * 1000 + 2_000
    const pair = await certificateValid(startsAt, startsAt + 86_400_000)
    writeFileSync(dev.certFile, pair.cert)
    writeFileSync(dev.keyFile, pair.key, { mode: 0o600 })
    expect(reloadTls(servers as never, files, log, 'sighup').ok).toBe(true)
    // The operator puts the pair in force back before the new one starts: that one is what stays.
    writeFileSync(dev.certFile, good.cert)
    writeFileSync(dev.keyFile, good.key, { mode: 0o600 })
    expect(reloadTls(servers as never, files, log, 'sighup').ok).toBe(true)
    for (let i = 0; i < 100 && Date.now() < startsAt + 500; i++) await new Promise((res) => setTimeout(res, 100))
    expect(await handshake(port)).toBe(inForce)
  }, 15_000)
})

type Alg = { name: 'ECDSA'; namedCurve: 'P-256' | 'P-384'; hash: 'SHA-256' | 'SHA-384' } | { name: 'RSASSA-PKCS1-v1_5'; modulusLength: number; publicExponent: Uint8Array; hash: 'SHA-256' } | { name: 'Ed25519' }

/** A certificate for `name`, signed by `issuer` (self-signed without one), valid from `notBefore` (an hour ago) until a day from now. */
async function issued(alg: Alg, name: string, issuer?: { name: string; keys: webcrypto.CryptoKeyPair; alg: Alg }, ca = false, notBefore = Date.now() - 3_600_000) {
  x509.cryptoProvider.set(webcrypto as unknown as Crypto)
  const keys = await webcrypto.subtle.generateKey(alg as never, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '02', subject: `CN=${name}`, issuer: issuer ? `CN=${issuer.name}` : `CN=${name}`,
    notBefore: new Date(notBefore), notAfter: new Date(Date.now() + 86_400_000),
    publicKey: keys.publicKey as never, signingKey: (issuer ?? { keys }).keys.privateKey as never, signingAlgorithm: (issuer ?? { alg }).alg as never,
    extensions: ca ? [new x509.BasicConstraintsExtension(true, undefined, true)] : [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'localhost' }])],
  })
  return { name, keys, alg, pem: cert.toString('pem'), key: createPrivateKey({ key: Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), format: 'der', type: 'pkcs8' }) }
}

/**
 * The match check is ours, so it must take every pair OpenSSL serves: each key type a CA issues for TLS,
 * each PEM form a key file comes in (PKCS#8, PKCS#1, SEC1, SEC1 after the `EC PARAMETERS` block that
 * `openssl ecparam -genkey` writes first), and a chain file (leaf, then intermediate, then root).
 */
describe('TLS reload takes every pair that belongs together', () => {
  const rsa = { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' } as const
  const p256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
  const p384 = { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' } as const
  // The DER of OID 1.2.840.10045.3.1.7 (prime256v1): 06 08 2a 86 48 ce 3d 03 01 07.
  const P256_PARAMETERS = '-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n'

  it.each([
    ['RSA, PKCS#8 key', rsa, (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' })],
    ['RSA, PKCS#1 key', rsa, (k: KeyObject) => k.export({ type: 'pkcs1', format: 'pem' })],
    ['P-256, SEC1 key', p256, (k: KeyObject) => k.export({ type: 'sec1', format: 'pem' })],
    ['P-256, SEC1 key after EC PARAMETERS', p256, (k: KeyObject) => P256_PARAMETERS + String(k.export({ type: 'sec1', format: 'pem' }))],
    ['P-384, PKCS#8 key', p384, (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' })],
    ['Ed25519, PKCS#8 key', { name: 'Ed25519' } as const, (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' })],
  ] as const)('%s, in a chain file with an intermediate and the root', async (_name, alg, keyPem) => {
    const dir = tempDir('ctb-tls-')
    const dev = await ensureDevTls(join(dir, 'tls'))
    const port = await serving(dev.certFile, dev.keyFile)
    const root = await issued(p256, 'Test Root', undefined, true)
    const intermediate = await issued(p256, 'Test Intermediate', root, true)
    const leaf = await issued(alg, 'localhost', intermediate)
    writeFileSync(dev.certFile, [leaf.pem, intermediate.pem, root.pem].join('\n'))
    writeFileSync(dev.keyFile, keyPem(leaf.key), { mode: 0o600 })
    const r = reloadTls(servers as never, { certFile: dev.certFile, keyFile: dev.keyFile }, createLogger(() => {}), 'sighup')
    expect(r, JSON.stringify(r)).toEqual({ ok: true, reloaded: true })
    expect(await handshake(port)).toBe(new X509Certificate(leaf.pem).fingerprint256)
  })
})

/**
 * A certificate that starts within the skew is swapped in later, from a timer: anything OpenSSL refuses
 * there (an RSA key below its security level, 1024 bits) would be an uncaught exception that ends the
 * broker. It must be refused at the reload, as it would be were it valid already.
 */
it('refuses at the reload, not later, a pending certificate OpenSSL will not serve', async () => {
  const dir = tempDir('ctb-tls-')
  const dev = await ensureDevTls(join(dir, 'tls'))
  const port = await serving(dev.certFile, dev.keyFile)
  const inForce = new X509Certificate(readFileSync(dev.certFile)).fingerprint256
  const startsAt = Math.ceil(Date.now() / 1000) * 1000 + 1_000
  const rsa1024 = { name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' } as const
  const weak = await issued(rsa1024, 'localhost', undefined, false, startsAt)
  writeFileSync(dev.certFile, weak.pem)
  writeFileSync(dev.keyFile, weak.key.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
  const r = reloadTls(servers as never, { certFile: dev.certFile, keyFile: dev.keyFile }, createLogger(() => {}), 'sighup')
  expect(r.ok ? 'taken' : r.error).toMatch(/key too small/)
  for (let i = 0; i < 30 && Date.now() < startsAt + 500; i++) await new Promise((res) => setTimeout(res, 100))
  expect(await handshake(port)).toBe(inForce)
}, 15_000)

/**
 * Preflight refuses to start a production broker (a public issuer) on the development CA's certificate
 * named as tls files. A reload must not swap in what the next start refuses: the development files copied
 * over tls.crt and tls.key, then SIGHUP, would serve a localhost certificate no client trusts until a
 * restart that then fails.
 */
describe('TLS reload in production and the development certificate', () => {
  it('refuses the development CA\'s certificate and keeps serving the one in force', async () => {
    const dir = tempDir('ctb-tls-')
    const certFile = join(dir, 'tls.crt')
    const keyFile = join(dir, 'tls.key')
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-subj', '/CN=ctb.example.org', '-days', '2'], { encoding: 'utf8' })
    expect(made.status).toBe(0)
    chmodSync(keyFile, 0o600)
    const port = await serving(certFile, keyFile)
    const inForce = new X509Certificate(readFileSync(certFile)).fingerprint256

    const dev = await ensureDevTls(join(dir, 'devtls'))
    writeFileSync(certFile, readFileSync(dev.certFile))
    writeFileSync(keyFile, readFileSync(dev.keyFile), { mode: 0o600 })
    const lines: string[] = []
    const r = reloadTls(servers as never, { certFile, keyFile }, createLogger((l) => lines.push(l)), 'sighup', { production: true })

    expect(r.ok).toBe(false)
    expect(await handshake(port)).toBe(inForce)
    const refused = lines.map((l) => JSON.parse(l) as { msg: string; error?: string }).filter((l) => l.msg === 'TLS certificate reload refused; keeping the certificate in force')
    expect(refused).toHaveLength(1)
    expect(refused[0]!.error).toContain('development certificate')
  })
})
