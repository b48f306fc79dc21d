import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { X509Certificate } from 'node:crypto'
import { createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify } from 'jose'
import { afterAll, describe, expect, it } from 'vitest'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'
import { freePort } from '../support/peers.ts'
import { BIN, startServeProcess, stopServeProcess } from '../support/serve_process.ts'
import { keyReloadRecords, serveSciTokenClient } from '../support/serve_scitoken_client.ts'

/** The certificate a new TLS connection to the port is shown. */
function peerFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().fingerprint256)
      s.end()
    })
    s.on('error', reject)
  })
}

/**
 * `keys rotate` and a renewed certificate take effect in a running broker on SIGHUP: the next SciToken is
 * signed with the new key and verifies through /jwks, which still publishes the old key; the next TLS
 * connection is shown the new certificate. No restart.
 */
describe('serve reloads keys and TLS on SIGHUP', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-hot-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('signs with the rotated key, publishes both, and serves the new certificate', async () => {
    const port = await freePort()
    const iamPort = await freePort()
    const env = { ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort), CTB_POLICY_WATCH: 'false', CTB_SCITOKEN_WATCH_KEYS: 'false' }
    const broker = await startServeProcess(env)
    const base = `https://127.0.0.1:${port}`
    // The renewed certificate comes from another CA; clients trust both, as during a CA change.
    const newCert = await ensureDevTls(join(dir, 'other-tls'))
    const client = serveSciTokenClient(base, iamPort, [join(dir, 'data/tls/dev-ca.crt'), newCert.caFile])
    const { tlsFetch, sciToken } = client
    const waitFor = async (pattern: RegExp) => {
      for (let i = 0; i < 100 && !pattern.test(broker.stderrText()); i++) await new Promise((r) => setTimeout(r, 50))
      expect(broker.stderrText()).toMatch(pattern)
    }
    try {
      const before = decodeProtectedHeader(await sciToken()).kid

      const rotate = spawnSync(process.execPath, [BIN, 'keys', 'rotate'], { env, encoding: 'utf8', timeout: 60_000 })
      expect(rotate.status, rotate.stderr).toBe(0)
      writeFileSync(join(dir, 'data/tls/server.key'), readFileSync(newCert.keyFile), { mode: 0o600 })
      writeFileSync(join(dir, 'data/tls/server.crt'), readFileSync(newCert.certFile))
      const oldFingerprint = await peerFingerprint(port)
      broker.kill('SIGHUP')
      await waitFor(/signing keys reloaded/)
      await waitFor(/TLS certificate reloaded/)

      expect(await peerFingerprint(port)).toBe(new X509Certificate(readFileSync(newCert.certFile)).fingerprint256)
      expect(oldFingerprint).not.toBe(await peerFingerprint(port))

      const token = await sciToken()
      const after = decodeProtectedHeader(token).kid
      expect(after).not.toBe(before)
      const jwks = createRemoteJWKSet(new URL(`${base}/jwks`), { [customFetch]: tlsFetch })
      const { payload } = await jwtVerify(token, jwks, { issuer: `https://localhost:${port}` })
      expect(payload.sub).toBeDefined()
      const published = (await (await tlsFetch(`${base}/jwks`)).json() as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)
      expect(published).toEqual(expect.arrayContaining([before, after]))
    } finally {
      await stopServeProcess(broker)
      await client.close()
    }
    expect(await keyReloadRecords(join(dir, 'data', 'audit.db'))).toEqual([['allow', expect.stringMatching(/^sighup: signing with /)]])
  }, 90_000)
})
