import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as x509 from '@peculiar/x509'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { preflight } from '../../src/preflight.ts'
import { tempDir } from '../support/tmp.ts'

/** A self-signed localhost certificate valid from `from` to `to` (epoch ms), and its key, written 0600. */
async function certificateFiles(dir: string, from: number, to: number): Promise<{ certFile: string; keyFile: string }> {
  x509.cryptoProvider.set(webcrypto as unknown as Crypto)
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=localhost', notBefore: new Date(from), notAfter: new Date(to), keys: keys as never, signingAlgorithm: alg,
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64')
  const certFile = join(dir, 'tls.crt')
  const keyFile = join(dir, 'tls.key')
  writeFileSync(certFile, cert.toString('pem'))
  writeFileSync(keyFile, `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`, { mode: 0o600 })
  return { certFile, keyFile }
}

async function preflightLines(from: number, to: number): Promise<{ lines: Record<string, unknown>[]; certFile: string }> {
  const dir = tempDir()
  const { certFile, keyFile } = await certificateFiles(dir, from, to)
  const config = loadConfig({ env: {
    CTB_DATA_DIR: join(dir, 'data'), CTB_POLICY_DIR: 'policies', CTB_TLS_MODE: 'files', CTB_TLS_CERT_FILE: certFile, CTB_TLS_KEY_FILE: keyFile,
  } })
  const lines: Record<string, unknown>[] = []
  await preflight(config, { production: false, iamIssuer: 'https://iam.example.org/', log: createLogger((l) => lines.push(JSON.parse(l) as Record<string, unknown>)) })
  return { lines, certFile }
}

// serve starts with a certificate outside its validity period (there is none in force to keep instead;
// docs/architecture.md), but every verifying client then refuses the broker: start-up must say so in the
// journal rather than leave the admin to find out from the clients.
describe('preflight and a certificate outside its validity period', () => {
  const day = 86_400_000

  it('says at start-up, as an error line with the date, that the certificate has expired', async () => {
    const notAfter = Math.floor((Date.now() - day) / 1000) * 1000
    const { lines, certFile } = await preflightLines(Date.now() - 10 * day, notAfter)
    const said = lines.filter((l) => l.msg === 'the TLS certificate has expired: every client that verifies it refuses the broker until it is renewed (then reload)')
    expect(said).toHaveLength(1)
    expect(said[0]).toMatchObject({ level: 'error', cert: certFile, notAfter: new Date(notAfter).toISOString() })
  })

  it('says so for a certificate that starts more than five minutes from now', async () => {
    const notBefore = Math.floor((Date.now() + day) / 1000) * 1000
    const { lines } = await preflightLines(notBefore, Date.now() + 10 * day)
    const said = lines.filter((l) => l.msg === 'the TLS certificate is not valid yet: every client that verifies it refuses the broker until it starts')
    expect(said).toHaveLength(1)
    expect(said[0]).toMatchObject({ level: 'error', notBefore: new Date(notBefore).toISOString() })
  })

  it('says nothing of a certificate in its validity period', async () => {
    const { lines } = await preflightLines(Date.now() - day, Date.now() + day)
    expect(lines.filter((l) => /TLS certificate/.test(String(l.msg)))).toEqual([])
  })
})
