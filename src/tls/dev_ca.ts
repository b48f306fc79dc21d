// @peculiar/x509 2.x resolves its ASN.1 services through tsyringe, which needs a Reflect polyfill loaded first.
import 'reflect-metadata'
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as x509 from '@peculiar/x509'
import { writeSecretFileAtomic } from '../lib/secure_file.ts'
import { DEV_CA_NAME } from './dev_ca_name.ts'

x509.cryptoProvider.set(webcrypto as unknown as Crypto)

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
const DAY_MS = 86_400_000

export interface DevTls {
  caFile: string
  certFile: string
  keyFile: string
  /** True when this call created the files. */
  created: boolean
}

/**
 * A development CA and a localhost server certificate under `<dir>`, so `npm start` serves HTTPS with no
 * configuration. Reused while the server certificate is valid for 30 more days; never for production.
 */
export async function ensureDevTls(dir: string, hosts: readonly string[] = ['localhost', '127.0.0.1', '::1']): Promise<DevTls> {
  const caFile = join(dir, 'dev-ca.crt')
  const certFile = join(dir, 'server.crt')
  const keyFile = join(dir, 'server.key')
  if (existsSync(caFile) && existsSync(certFile) && existsSync(keyFile) && stillValid(certFile, hosts)) {
    return { caFile, certFile, keyFile, created: false }
  }
  const now = Date.now()
  const caKeys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: DEV_CA_NAME,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3650 * DAY_MS),
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  })
  const serverKeys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${hosts[0]}`,
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 397 * DAY_MS),
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: /^[\d.]+$|:/.test(h) ? 'ip' as const : 'dns' as const, value: h }))),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  })
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', serverKeys.privateKey)
  writeSecretFileAtomic(keyFile, toPem(new Uint8Array(pkcs8), 'PRIVATE KEY'))
  writeSecretFileAtomic(caFile, ca.toString('pem') + '\n')
  writeSecretFileAtomic(certFile, server.toString('pem') + '\n')
  return { caFile, certFile, keyFile, created: true }
}

function stillValid(certFile: string, hosts: readonly string[]): boolean {
  try {
    const cert = new NodeX509(readFileSync(certFile))
    if (Date.parse(cert.validTo) < Date.now() + 30 * DAY_MS) return false
    return hosts.every((h) => (/^[\d.]+$|:/.test(h) ? cert.checkIP(h) : cert.checkHost(h)) !== undefined)
  } catch {
    return false
  }
}

function randomSerial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16))
  b[0] = b[0]! & 0x7f // positive INTEGER
  return Buffer.from(b).toString('hex')
}

function toPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`
}
