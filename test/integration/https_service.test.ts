import { spawnSync } from 'node:child_process'
import { request } from 'node:https'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { ensureAuditMacKeyFile } from '../../src/keys/audit_mac_key.ts'
import { KeyStore } from '../../src/keys/key_store.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { startBroker, type RunningBroker } from '../../src/server.ts'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'

function httpsGet(url: string, ca?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ...(ca ? { ca } : {}), timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

describe('HTTPS service on embedded defaults', () => {
  let broker: RunningBroker
  let dir: string
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ctb-https-'))
    const config = loadConfig({ env: { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0' } })
    broker = await startBroker(config, { log: silentLogger })
  })
  afterAll(async () => {
    await broker?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('generates a development CA and serves TLS that verifies against it', async () => {
    expect(broker.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const ca = readFileSync(broker.devCaFile!)
    const health = await httpsGet(`${broker.url}/healthz`, ca)
    expect(health).toEqual({ status: 200, body: '{"status":"ok"}' })
    const local = await httpsGet(`https://localhost:${broker.port}/jwks`, ca)
    // The key that signs and the next one, published ahead of the rotation that will make it sign (docs/architecture.md).
    const kids = (JSON.parse(local.body) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)
    expect(new Set(kids).size).toBe(2)
  })

  it('refuses a client that does not trust the development CA', async () => {
    // Node's bundled CA list does not include our development CA.
    await expect(httpsGet(`${broker.url}/healthz`)).rejects.toThrow(/self-signed|unable to verify|certificate/i)
  })
})

/**
 * Production TLS modes need a real IAM issuer with an expected audience, and the signing and audit MAC keys
 * already in place (`keys init`); nothing contacts the IAM at start-up.
 */
function productionConfigFile(dir: string): string {
  const f = join(dir, 'broker.yaml')
  writeFileSync(f, 'trust_domain: cm.pool.example.org\niam:\n  issuers:\n    - issuer: https://iam.example.org/\n      audience: https://broker.example.org\n')
  new KeyStore(join(dir, 'data', 'keys')).createCondorKey('broker1')
  ensureAuditMacKeyFile(join(dir, 'data', 'keys', 'audit_mac.key'))
  return f
}

describe('TLS modes', () => {
  it('serves HTTPS with a configured certificate and key (tls.mode files)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctb-files-'))
    try {
      // A certificate of the site's own (here self-signed by openssl): one from the development CA is refused
      // with a public issuer, as tls.mode auto is.
      const material = { certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key'), caFile: join(dir, 'server.crt') }
      const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', material.keyFile, '-out', material.certFile], { encoding: 'utf8', timeout: 30_000 })
      expect(made.status, made.stderr).toBe(0)
      chmodSync(material.keyFile, 0o600)
      const config = loadConfig({ file: productionConfigFile(dir), env: { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0', CTB_TLS_MODE: 'files', CTB_TLS_CERT_FILE: material.certFile, CTB_TLS_KEY_FILE: material.keyFile, CTB_ISSUER: 'https://broker.example.org' } })
      const b = await startBroker(config, { log: silentLogger })
      try {
        expect(b.devCaFile).toBeUndefined()
        const r = await httpsGet(`${b.url}/.well-known/openid-configuration`, readFileSync(material.caFile))
        expect(JSON.parse(r.body).issuer).toBe('https://broker.example.org')
      } finally {
        await b.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('serves plain HTTP behind a TLS proxy, advertising the public https issuer (tls.mode off)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctb-off-'))
    try {
      const config = loadConfig({ file: productionConfigFile(dir), env: { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0', CTB_TLS_MODE: 'off', CTB_ISSUER: 'https://tokens.example.org' } })
      const b = await startBroker(config, { log: silentLogger })
      try {
        expect(b.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
        const doc = await (await fetch(`${b.url}/.well-known/openid-configuration`)).json() as { issuer: string; jwks_uri: string }
        expect(doc).toMatchObject({ issuer: 'https://tokens.example.org', jwks_uri: 'https://tokens.example.org/jwks' })
      } finally {
        await b.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a production configuration without an IAM issuer refuses to start (no development IAM)', async () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tmpdir(), 'ctb-noiam-data'), CTB_LISTEN_PORT: '0', CTB_TLS_MODE: 'off', CTB_ISSUER: 'https://tokens.example.org' } })
    await expect(startBroker(config, { log: silentLogger })).rejects.toThrow(/development IAM is refused in production/)
    rmSync(join(tmpdir(), 'ctb-noiam-data'), { recursive: true, force: true })
  })

  it('a production configuration refuses an IAM issuer marked development', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctb-devprod-'))
    try {
      const f = join(dir, 'broker.yaml')
      writeFileSync(f, 'iam:\n  issuers:\n    - issuer: http://127.0.0.1:9/\n      development: true\n')
      const config = loadConfig({ file: f, env: { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: '0', CTB_TLS_MODE: 'off', CTB_ISSUER: 'https://tokens.example.org' } })
      await expect(startBroker(config, { log: silentLogger })).rejects.toThrow(/marks an issuer as development/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a missing certificate file stops start-up with one line', async () => {
    const config = loadConfig({ file: productionConfigFile(mkdtempSync(join(tmpdir(), 'ctb-nofile-'))), env: { CTB_DATA_DIR: join(tmpdir(), 'ctb-nofile-data'), CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0', CTB_TLS_MODE: 'files', CTB_TLS_CERT_FILE: '/nonexistent/tls.crt', CTB_TLS_KEY_FILE: '/nonexistent/tls.key' } })
    await expect(startBroker(config, { log: silentLogger })).rejects.toThrow(/^cannot read TLS certificate or key: [^\n]*$/)
    rmSync(join(tmpdir(), 'ctb-nofile-data'), { recursive: true, force: true })
  })
})
