// @peculiar/x509 2.x resolves its ASN.1 services through tsyringe, which needs a Reflect polyfill loaded first.
import 'reflect-metadata'
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto'
import { closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { AsnConvert } from '@peculiar/asn1-schema'
import { id_ce_cRLNumber, SubjectPublicKeyInfo } from '@peculiar/asn1-x509'
import * as x509 from '@peculiar/x509'
import { InvalidRequest, OperatorError } from '../errors.ts'
import { readSecretFile } from '../lib/secure_file.ts'
import { crlNumberDer, nextCrlNumber } from './crl_number.ts'
import { signCrl } from './crl_signing.ts'

x509.cryptoProvider.set(webcrypto as unknown as Crypto)

/**
 * The pool CA: a small X.509 CA whose only job is host certificates for HTCondor's SSL authentication
 * (the TLS that carries SciTokens to a schedd or collector). Its key is created here, kept 0600 under
 * the broker's data directory and never served; only the certificate and the CRL leave. No HTTP here.
 * @see docs/pool-ca.md
 */

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
const CA_LIFETIME_DAYS = 3650
const DAY = 86_400
/**
 * How far behind the broker a relying party's clock may run: a host certificate's notBefore and a CRL's
 * thisUpdate are put this far back, or such a party would find them not yet valid.
 */
const CLOCK_SKEW_SECONDS = 60

import { poolCaFiles, type PoolCaFiles } from './pool_ca_files.ts'
export { poolCaFiles, type PoolCaFiles }

/** Creates the CA key (0600) and self-signed certificate under `dir`; refuses when either file exists. */
export async function initPoolCa(dir: string, options: { name: string; now: number }): Promise<PoolCaFiles & { serial: string }> {
  const files = poolCaFiles(dir)
  for (const f of [files.keyFile, files.certFile]) {
    if (existsSync(f)) throw new OperatorError('EEXIST', `${f} exists; the pool CA is never overwritten (move it away first to start a new CA)`)
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9 ._:-]{0,63}$/.test(options.name)) throw new OperatorError('ECANAME', 'the CA name is 1-64 letters, digits, spaces and . _ : -')
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const serial = newSerial()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial,
    name: `CN=${options.name}`,
    notBefore: new Date((options.now - 60) * 1000),
    notAfter: new Date((options.now + CA_LIFETIME_DAYS * DAY) * 1000),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      // pathLen 0: the pool CA signs host certificates only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  const pkcs8 = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  // The certificate first, the key last: the key's presence is what says a pool CA exists (serve, preflight).
  placeTogether(dir, [
    [files.certFile, cert.toString('pem') + '\n'],
    [files.keyFile, x509.PemConverter.encode(pkcs8.buffer as ArrayBuffer, 'PRIVATE KEY') + '\n'],
  ])
  return { ...files, serial }
}

/**
 * Creates all the files (0600) or none: each is written and fsynced under a dot-prefixed temp name, then
 * hard-linked to its name, which fails when the name exists, so two racing `ca init` runs cannot both win.
 * On any failure the names this run created are removed: a key without its certificate would make every
 * later `ca init` refuse ("exists") while serve finds no usable CA.
 */
function placeTogether(dir: string, entries: Array<[path: string, data: string]>): void {
  const temps: string[] = []
  const placed: string[] = []
  try {
    for (const [path, data] of entries) {
      const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
      const fd = openSync(tmp, 'wx', 0o600)
      temps.push(tmp)
      try {
        writeFileSync(fd, data)
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
    }
    entries.forEach(([path], i) => {
      linkSync(temps[i]!, path)
      placed.push(path)
    })
    const dirFd = openSync(dir, 'r')
    try { fsyncSync(dirFd) } finally { closeSync(dirFd) }
  } catch (err) {
    for (const p of placed) rmSync(p, { force: true })
    throw new OperatorError('ECAWRITE', `cannot create the pool CA in ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; nothing was kept`)
  } finally {
    for (const t of temps) rmSync(t, { force: true })
  }
}

/** A certificate request after checking: what the caller proved it holds, and the names it asks for. */
export interface HostCertificateRequest {
  /** The CSR's public key (the client generated the key pair; the private key never reaches the broker). */
  publicKey: x509.PublicKey
  dns: string[]
  ip: string[]
}

export interface IssuedHostCertificate {
  pem: string
  /** Lower-case hex, as openssl prints it and as the CRL lists it. */
  serial: string
  notBefore: number
  notAfter: number
}

/** The loaded CA: signs host certificates and CRLs. */
export class PoolCa {
  readonly cert: x509.X509Certificate
  readonly #key: CryptoKey
  /** The number of the last CRL signed here: the next is higher, even within the same second. */
  #crlNumber = 0n

  private constructor(cert: x509.X509Certificate, key: CryptoKey) {
    this.cert = cert
    this.#key = key
  }

  /** Loads the CA from `dir`; the key file must be 0600 (readSecretFile refuses wider modes). */
  static async load(dir: string): Promise<PoolCa> {
    const files = poolCaFiles(dir)
    if (!existsSync(files.keyFile) || !existsSync(files.certFile)) {
      throw new OperatorError('ENOCA', `no pool CA under ${dir} (run "condor-token-broker ca init")`)
    }
    const pem = readSecretFile(files.keyFile).toString('utf8')
    let der: ArrayBuffer
    let key: webcrypto.CryptoKey
    try {
      der = x509.PemConverter.decodeFirst(pem)
      key = await webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
    } catch {
      // An RSA or other-curve key, or openssl's SEC1 form: the operator's to replace, not an internal error.
      throw new OperatorError('ECAKEY', `${files.keyFile} is not an EC P-256 private key in PKCS#8 PEM (what "ca init" writes)`)
    }
    let cert: x509.X509Certificate
    try {
      cert = new x509.X509Certificate(readFileSync(files.certFile, 'utf8'))
    } catch (err) {
      throw new OperatorError('ECACERT', `cannot read ${files.certFile} as an X.509 certificate: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    // ca.crt is what verifiers are told to trust: one that is not the key's (another CA's, restored from the
    // wrong backup or put there by whoever can write the directory) must not be served beside this key.
    // Compared as keys, not as bytes: RFC 5480 lets a certificate write the same EC point compressed.
    const keyPublic = createPublicKey(createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' }))
    const certPublic = createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: 'der', type: 'spki' })
    if (!keyPublic.equals(certPublic)) {
      throw new OperatorError('ECAMISMATCH', `${files.certFile} is not the certificate of ${files.keyFile} (their public keys differ); restore the pair that belongs together`)
    }
    return new PoolCa(cert, key as unknown as CryptoKey)
  }

  get pem(): string {
    return this.cert.toString('pem') + '\n'
  }

  /**
   * Signs a host certificate for SSL authentication: serverAuth and clientAuth (a daemon is both), the
   * SANs given, subject CN = the first DNS name (HTCondor's SSL mapping reads the subject).
   */
  async issueHostCertificate(req: HostCertificateRequest, validity: { now: number; lifetime: number }): Promise<IssuedHostCertificate> {
    if (req.dns.length === 0) throw new TypeError('a host certificate names at least one DNS name')
    const serial = newSerial()
    const caNotAfter = Math.floor(this.cert.notAfter.getTime() / 1000)
    // Nothing this CA signs is valid past its own notAfter (RFC 5280 §6.1.3): signing after it would make a
    // certificate born expired, and record it as issued.
    if (caNotAfter <= validity.now) {
      throw new OperatorError('ECAEXPIRED', `the pool CA certificate expired at ${this.cert.notAfter.toISOString()}; no host certificate can be signed with it (set up a new pool CA)`)
    }
    const notBefore = validity.now - CLOCK_SKEW_SECONDS
    const notAfter = Math.min(validity.now + validity.lifetime, caNotAfter)
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: new x509.Name([{ CN: [req.dns[0]!] }]),
      issuer: this.cert.subjectName,
      notBefore: new Date(notBefore * 1000),
      notAfter: new Date(notAfter * 1000),
      publicKey: req.publicKey,
      signingKey: this.#key,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(keyUsageOf(req.publicKey), true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([
          ...req.dns.map((value) => ({ type: 'dns' as const, value })),
          ...req.ip.map((value) => ({ type: 'ip' as const, value })),
        ]),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert),
      ],
    })
    return { pem: cert.toString('pem') + '\n', serial, notBefore, notAfter }
  }

  /**
   * A CRL listing `revoked` (serials in hex, each once), valid for `lifetime` seconds from `now`. An entry
   * with `hold` carries reason code certificateHold (RFC 5280 §5.3.1), the one reason after which a serial
   * may leave a later CRL; the others carry no reason code.
   */
  async crl(revoked: ReadonlyArray<{ serial: string; revokedAt: number; hold?: boolean }>, validity: { now: number; lifetime: number }): Promise<string> {
    // Built by crl_signing.ts, not X509CrlGenerator, whose cost grows with the square of the entries.
    const number = this.#crlNumber = nextCrlNumber(validity.now, this.#crlNumber)
    const der = await signCrl({
      issuer: new Uint8Array(this.cert.subjectName.toArrayBuffer()),
      // A CRL "not yet valid" to a party whose clock is behind fails every certificate there, with CRL checks on.
      thisUpdate: validity.now - CLOCK_SKEW_SECONDS,
      nextUpdate: validity.now + validity.lifetime,
      entries: revoked,
      // RFC 5280 §5.2.3: conforming issuers number their CRLs, increasing. The signing second, above
      // random low bits, increases without any state to share between replicas and keeps two replicas'
      // CRLs of one second apart; a second CRL signed here in the same second (a revocation just after a
      // read) takes a higher number, or the two would not be ordered (crl_number.ts).
      extensions: [
        new Uint8Array((await x509.AuthorityKeyIdentifierExtension.create(this.cert)).rawData),
        new Uint8Array(new x509.Extension(id_ce_cRLNumber, false, crlNumberDer(number)).rawData),
      ],
    }, this.#key)
    // RFC 7468 §5: the CRL label is "X509 CRL" (openssl reads no other).
    return x509.PemConverter.encode(der.buffer as ArrayBuffer, 'X509 CRL') + '\n'
  }
}

/**
 * Every host key signs (TLS handshakes); only an RSA key may also encipher (TLS 1.2 RSA key transport).
 * RFC 5480 §3, as RFC 8813 updates it, forbids keyEncipherment for an EC key.
 */
function keyUsageOf(key: x509.PublicKey): number {
  return key.algorithm.name === 'ECDSA'
    ? x509.KeyUsageFlags.digitalSignature
    : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment
}

/** 16 random bytes with the top bit clear (a positive INTEGER with no leading-zero trimming ambiguity). */
function newSerial(): string {
  const b = randomBytes(16)
  b[0] = (b[0]! & 0x7f) | 0x10
  return b.toString('hex')
}

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

/**
 * Reads a PEM CSR: its signature must verify (the caller holds the key) under SHA-256/384/512, its key
 * must be EC P-256/P-384 or RSA ≥ 2048 with a public exponent of at least 65537, and the names asked for
 * are plain lower-case DNS names and IPv4 addresses. The names come from the request body, not the CSR:
 * the broker decides them; the CSR only proves key possession.
 */
export async function checkCsr(pem: string): Promise<x509.PublicKey> {
  let csr: x509.Pkcs10CertificateRequest
  try {
    csr = new x509.Pkcs10CertificateRequest(pem)
  } catch {
    throw new InvalidRequest('csr is not a PEM PKCS#10 certificate request')
  }
  // The key first: a key of another kind is refused for what it is, not as a signature that "does not verify".
  // Judged as OpenSSL reads it (what verifies the signature here and the certificate everywhere), not from the
  // library's reading of the encoding: that takes the modulus's length in octets, so a 512-bit modulus written
  // with leading zero octets would count as 2048 bits.
  let key: KeyObject
  try {
    key = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' })
  } catch {
    throw new InvalidRequest('the CSR key cannot be read')
  }
  const details = key.asymmetricKeyDetails ?? {}
  const strong = (key.asymmetricKeyType === 'ec' && (details.namedCurve === 'prime256v1' || details.namedCurve === 'secp384r1'))
    || (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048)
  if (!strong) throw new InvalidRequest('the CSR key must be EC P-256/P-384 or RSA of at least 2048 bits')
  // OpenSSL names a curve whose parameters are spelt out when they are a known curve's, and writes them back spelt
  // out; RFC 5480 §2.1.1 forbids that form (specifiedCurve) in a certificate, and strict verifiers refuse it.
  if (key.asymmetricKeyType === 'ec' && !namesItsCurve(csr.publicKey.rawData)) {
    throw new InvalidRequest('the CSR\'s EC key must name its curve (RFC 5480 namedCurve), not spell out the curve\'s parameters')
  }
  if (key.asymmetricKeyType === 'rsa' && !soundRsaExponent(details.publicExponent)) {
    throw new InvalidRequest('the CSR\'s RSA public exponent must be odd and at least 65537')
  }
  // The signature is the proof of possession: under SHA-1 (collisions are practical) it proves little.
  const hash = (csr.signatureAlgorithm as { hash?: { name?: string } }).hash?.name
  if (hash === undefined || !CSR_HASHES.has(hash)) throw new InvalidRequest('the CSR must be signed with SHA-256, SHA-384 or SHA-512')
  let ok = false
  try { ok = await csr.verify() } catch { ok = false }
  if (!ok) throw new InvalidRequest('the CSR signature does not verify')
  // The certificate carries the key as OpenSSL writes it (DER), not the CSR's encoding of it. An EC point goes in
  // uncompressed, the form RFC 5480 §2.2 has every implementation read (compressed is optional: Go refuses it):
  // OpenSSL writes back the form it read, so the key is taken again from its coordinates, written uncompressed.
  const certified = key.asymmetricKeyType === 'ec' ? createPublicKey({ key: key.export({ format: 'jwk' }), format: 'jwk' }) : key
  return new x509.PublicKey(certified.export({ type: 'spki', format: 'der' }))
}

const CSR_HASHES: ReadonlySet<string> = new Set(['SHA-256', 'SHA-384', 'SHA-512'])

/** Whether an EC SubjectPublicKeyInfo's algorithm parameters are a curve's OBJECT IDENTIFIER (tag 6). */
function namesItsCurve(spki: ArrayBuffer): boolean {
  try {
    const parameters = AsnConvert.parse(spki, SubjectPublicKeyInfo).algorithm.parameters
    return parameters !== null && parameters !== undefined && new Uint8Array(parameters)[0] === 0x06
  } catch {
    return false
  }
}

/** NIST SP 800-89 §5.3.3: an RSA public exponent is odd and at least 65537 (e = 3 or 1 are refused). */
function soundRsaExponent(e: bigint | undefined): boolean {
  return e !== undefined && e % 2n === 1n && e >= 65537n
}

export function checkSanNames(dns: readonly string[], ip: readonly string[]): void {
  if (dns.length === 0) throw new InvalidRequest('dns must name at least one host')
  for (const d of dns) if (!DNS_NAME.test(d)) throw new InvalidRequest(`dns: "${d.slice(0, 64)}" is not a lower-case DNS host name`)
  for (const a of ip) if (!IPV4.test(a)) throw new InvalidRequest(`ip: "${a.slice(0, 64)}" is not an IPv4 address`)
}
