import 'reflect-metadata'
import { createPrivateKey, generateKeyPairSync, webcrypto } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as x509 from '@peculiar/x509'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { ensureAuditMacKeyFile } from '../../src/keys/audit_mac_key.ts'
import { KeyStore } from '../../src/keys/key_store.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { startBroker } from '../../src/server.ts'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'
import { cli } from '../support/cli.ts'

/**
 * What `serve` refuses before it creates anything: a configuration that cannot run must leave no key,
 * database or certificate behind, and a broker with a public issuer never invents the signing key the
 * configuration names.
 */

const PUBLIC = 'https://broker.example.org'
const IAM = 'https://iam.example.org/'

let dir: string
let data: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctb-preflight-'))
  data = join(dir, 'not-yet', 'data')
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

function file(name: string, text: string): string {
  const f = join(dir, name)
  writeFileSync(f, text)
  return f
}

/** A production configuration that could start but for what each test takes away or adds. */
function publicConfig(extra = '', iamIssuer = `    - issuer: ${IAM}\n      audience: ${PUBLIC}\n`): string {
  return file('broker.yaml', `issuer: ${PUBLIC}\ntrust_domain: pool.example.org\ndata_dir: ${data}\ntls:\n  mode: off\nlisten:\n  port: 0\niam:\n  issuers:\n${iamIssuer}${extra}`)
}

function capturingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = []
  return { warnings, info() {}, error() {}, warn(msg, fields) { warnings.push(`${msg} ${JSON.stringify(fields ?? {})}`) } }
}

describe('serve validates everything before any side effect', () => {
  it('refuses the example configuration (missing TLS files, IAM secret, key, policies) and creates nothing', async () => {
    const r = await cli(['serve', '--config', 'config/broker.example.yaml'], { CTB_DATA_DIR: data })
    expect(r.code).toBe(78) // EX_CONFIG: serve's start-up refusals
    expect(r.err).toMatch(/cannot read TLS certificate or key: \/etc\/condor-token-broker\/tls\.crt/)
    expect(r.err).toMatch(/iam\.issuers\.0\.client: cannot read \/etc\/condor-token-broker\/iam-client-secret/)
    expect(r.err).toMatch(/keys init/)
    expect(r.err).toMatch(/policy: \/etc\/condor-token-broker\/policies: cannot read policy directory/)
    expect(r.err).not.toMatch(/\n\s+at /) // no stack trace
    expect(existsSync(join(dir, 'not-yet'))).toBe(false)
  })

  it('leaves the example\'s own data_dir alone too', async () => {
    const existed = existsSync('/var/lib/condor-token-broker')
    const r = await cli(['serve', '--config', 'config/broker.example.yaml'], {})
    expect(r.code).toBe(78) // EX_CONFIG: serve's start-up refusals
    expect(existsSync('/var/lib/condor-token-broker')).toBe(existed)
  })

  it('refuses a misspelt key at its line and column, exits non-zero, creates nothing', async () => {
    const f = file('typo.yaml', `issuer: ${PUBLIC}\ntls:\n  mdoe: files\n`)
    const r = await cli(['serve', '--config', f], { CTB_DATA_DIR: data })
    expect(r.code).toBe(78) // EX_CONFIG: serve's start-up refusals
    expect(r.err).toContain(`${f}:3:3: tls: unknown key "mdoe"`)
    expect(existsSync(join(dir, 'not-yet'))).toBe(false)
  })

  it('with a public issuer, never invents a missing named key: one line saying to run keys init or keys import', async () => {
    const f = publicConfig('idtoken:\n  key: POOL\n')
    const r = await cli(['serve', '--config', f], {})
    expect(r.code).toBe(78) // EX_CONFIG: serve's start-up refusals
    // Nor the audit MAC key, which every replica must share: keys init makes both.
    expect(r.err.split('\n')).toEqual([
      'condor-token-broker: cannot start, 2 problems:',
      expect.stringMatching(/^ {2}the HTCondor signing key "POOL" .*does not exist.*keys init.*keys import FILE --name POOL/),
      expect.stringMatching(/^ {2}no audit MAC key at \S+\/keys\/audit_mac\.key: run "condor-token-broker keys init" on the first broker and copy the file/),
    ])
    expect(existsSync(join(data, 'keys', 'condor', 'POOL'))).toBe(false)
    expect(existsSync(join(dir, 'not-yet'))).toBe(false)
  })

  it('starts once the named key was imported', async () => {
    const pool = file('POOL', 'x'.repeat(64))
    chmodSync(pool, 0o600)
    new KeyStore(join(data, 'keys')).importCondorKey(pool, 'POOL')
    // As `keys init` makes it for a public broker (never made up by serve there, docs/audit.md).
    ensureAuditMacKeyFile(join(data, 'keys', 'audit_mac.key'))
    const b = await startBroker(loadConfig({ file: publicConfig('idtoken:\n  key: POOL\n'), env: {} }), { log: capturingLogger() })
    await b.close()
  })

  it('with a public issuer, refuses to serve the development certificate (tls.mode auto, the default)', async () => {
    new KeyStore(join(data, 'keys')).createCondorKey('broker1')
    ensureAuditMacKeyFile(join(data, 'keys', 'audit_mac.key'))
    const r = await cli(['serve', '--config', publicConfig()], { CTB_TLS_MODE: 'auto' })
    expect(r.code).toBe(78) // EX_CONFIG: serve's start-up refusals
    expect(r.err).toMatch(/^condor-token-broker: tls\.mode auto serves a development certificate for localhost; .*tls\.mode files/)
    expect(existsSync(join(data, 'tls'))).toBe(false)
  })

  it('refuses a TLS private key that group or other can read, like every secret file', async () => {
    const pki = await ensureDevTls(join(dir, 'pki'))
    chmodSync(pki.keyFile, 0o644)
    const f = file('tls.yaml', `tls:\n  mode: files\n  cert_file: ${pki.certFile}\n  key_file: ${pki.keyFile}\nlisten:\n  port: 0\ndev_iam:\n  port: 0\n`)
    const r = await cli(['serve', '--config', f], { CTB_DATA_DIR: data })
    expect(r.code).toBe(78) // EX_CONFIG: serve's start-up refusals
    expect(r.err).toBe(`condor-token-broker: TLS key: ${pki.keyFile} has mode 0644; key and token files must not be accessible to group or other (chmod 600 ${pki.keyFile})`)
    expect(existsSync(join(dir, 'not-yet'))).toBe(false)
  })

  it('refuses a TLS key that is not the certificate\'s, even one of another type that OpenSSL would take', async () => {
    const pki = await ensureDevTls(join(dir, 'pki-rsa'))
    writeFileSync(pki.keyFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
    const f = file('tls-rsa.yaml', `tls:\n  mode: files\n  cert_file: ${pki.certFile}\n  key_file: ${pki.keyFile}\nlisten:\n  port: 0\ndev_iam:\n  port: 0\n`)
    const r = await cli(['serve', '--config', f], { CTB_DATA_DIR: data })
    expect(r.code).toBe(78) // EX_CONFIG: serve's start-up refusals
    expect(r.err).toBe(`condor-token-broker: TLS key ${pki.keyFile} does not match the certificate in ${pki.certFile}`)
    expect(existsSync(join(data, 'audit.db'))).toBe(false)
  })

  // A key that is the certificate's can still be one OpenSSL will not serve: an RSA key of 1024 bits is
  // below its default security level ("ee key too small"). serve passed the pair, created its keys and
  // audit database, and then died at the listener with "internal error" (status 70).
  it('refuses a pair that belongs together but that OpenSSL will not serve (RSA 1024)', async () => {
    x509.cryptoProvider.set(webcrypto as unknown as Crypto)
    const alg = { name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }
    const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01', name: 'CN=localhost', notBefore: new Date(Date.now() - 3_600_000), notAfter: new Date(Date.now() + 86_400_000), keys: keys as never, signingAlgorithm: alg,
    })
    const certFile = file('weak.crt', cert.toString('pem'))
    const keyFile = join(dir, 'weak.key')
    writeFileSync(keyFile, createPrivateKey({ key: Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
    const f = file('tls-weak.yaml', `tls:\n  mode: files\n  cert_file: ${certFile}\n  key_file: ${keyFile}\nlisten:\n  port: 0\ndev_iam:\n  port: 0\n`)
    const r = await cli(['serve', '--config', f], { CTB_DATA_DIR: data })
    expect(r.code).toBe(78) // EX_CONFIG: serve's start-up refusals
    expect(r.err).toMatch(/^condor-token-broker: TLS certificate \S+weak\.crt and key \S+weak\.key cannot be served: .*ee key too small$/)
    expect(existsSync(data)).toBe(false)
  })
})

describe('a public broker insists on an IAM audience', () => {
  it('refuses an IAM issuer without audience at start-up, naming the explicit opt-out', async () => {
    new KeyStore(join(data, 'keys')).createCondorKey('broker1')
    const r = await cli(['serve', '--config', publicConfig('', `    - issuer: ${IAM}\n`)], {})
    expect(r.code).toBe(78) // EX_CONFIG: serve's start-up refusals
    expect(r.err).toMatch(/iam\.issuers\.0 \(https:\/\/iam\.example\.org\/\) has no audience: a token minted for any other service would be exchanged; set audience: https:\/\/broker\.example\.org .*allow_any_audience: true/)
    expect(existsSync(join(data, 'audit.db'))).toBe(false)
  })

  it('starts with allow_any_audience: true, and says so in the log', async () => {
    new KeyStore(join(data, 'keys')).createCondorKey('broker1')
    ensureAuditMacKeyFile(join(data, 'keys', 'audit_mac.key'))
    const log = capturingLogger()
    const b = await startBroker(loadConfig({ file: publicConfig('', `    - issuer: ${IAM}\n      allow_any_audience: true\n`), env: {} }), { log })
    await b.close()
    expect(log.warnings.filter((w) => w.includes('any other service'))).toEqual([expect.stringContaining(IAM)])
  })

  it('refuses audience and allow_any_audience together', () => {
    expect(() => loadConfig({ file: publicConfig('', `    - issuer: ${IAM}\n      audience: ${PUBLIC}\n      allow_any_audience: true\n`), env: {} }))
      .toThrow(/allow_any_audience: give audience or allow_any_audience, not both/)
  })
})

describe('the example configuration', () => {
  it('sets an expected audience for its IAM', () => {
    const c = loadConfig({ file: 'config/broker.example.yaml', env: {} })
    expect(c.iam.issuers[0]!.audience).toEqual([readFileSync('config/broker.example.yaml', 'utf8').match(/^issuer: (\S+)$/m)![1]])
  })
})
