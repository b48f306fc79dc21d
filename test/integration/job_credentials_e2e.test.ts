import { X509Certificate } from 'node:crypto'
import { request } from 'node:https'
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:tls'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import { buildIdTokenClaims, mintIdToken } from '../../src/issuance/idtoken.ts'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'
import { cli } from '../support/cli.ts'
import { claimsOf, startE2e, type E2e } from '../support/broker_e2e.ts'
import { tempDir } from '../support/tmp.ts'

/**
 * Users' job credentials as `npm start` serves them: the development IAM (offline_access and refresh
 * tokens), the shipped policies' job-credentials role, the storer over HTTPS, our credmon's token endpoint
 * and the Vault-compatible listener on its own TLS socket.
 */
describe('job credentials against the development IAM', () => {
  let e: E2e
  beforeAll(async () => {
    const dir = tempDir('ctb-credcfg-')
    const file = join(dir, 'broker.yaml')
    writeFileSync(file, `credentials:
  enabled: true
  providers:
    - { name: cms, kind: iam, role: job-credentials }
    - { name: storage, kind: scitoken, role: job-credentials }
  vault: { enabled: true, port: 0 }
`)
    // The shipped policies, with the job-credentials grant opted in to Vault reads as docs/job-credentials.md
    // tells an operator to: shipped, it serves none (a Vault read names no credd role or site to check).
    const policies = join(dir, 'policies')
    cpSync('policies', policies, { recursive: true })
    const users = join(policies, '30-users.yaml')
    const shipped = readFileSync(users, 'utf8')
    if (!shipped.includes('fetched_by: { roles: [credd] }')) throw new Error('the shipped job-credentials grant has no fetched_by line to opt in')
    writeFileSync(users, shipped.replace('fetched_by: { roles: [credd] }', 'fetched_by: { roles: [credd], vault_reads: true }'))
    e = await startE2e({ CTB_CONFIG: file, CTB_POLICY_DIR: policies })
  })
  afterAll(async () => { await e?.close() })

  const get = (base: string, path: string, headers: Record<string, string>) => new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
    const req = request(`${base}${path}`, { method: 'GET', ca: e.ca, headers, timeout: 10_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { text += c })
      res.on('end', () => { try { resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }) } catch (err) { reject(err) } })
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })

  function creddToken(): string {
    const claims = buildIdTokenClaims({ trustDomain: 'pool.example.org', subject: 'credd-ap1@aps.pool.example.org', authz: ['DAEMON'], lifetimeSeconds: 600, now: Math.floor(Date.now() / 1000), extra: { ctb_role: 'credd', ctb_gen: 0 } })
    return mintIdToken(claims, e.broker.services.keys.idtoken)
  }

  it('registers alice through the storer, then serves her jobs over both read paths', async () => {
    const { accessToken } = await devIamUserToken(e.devIam, 'alice', { scope: 'openid profile wlcg wlcg.groups offline_access compute.read storage.read:/store/user storage.create:/store/user storage.modify:/store/user' })
    const caFile = join(e.dir, 'ca.pem')
    writeFileSync(caFile, e.ca)
    const broker = await cli(['credential-storer', '--print', '--broker', e.broker.url.replace('127.0.0.1', 'localhost'), '--ca-file', caFile, 'cms'], { BEARER_TOKEN: accessToken })
    expect(broker.err).toBe('')
    expect(JSON.parse(broker.out)).toMatchObject({ user: 'alice', provider: 'cms' })

    const job = await get(e.broker.url, '/v1/credentials/alice/cms/token', { authorization: `Bearer ${creddToken()}` })
    expect(job.status, JSON.stringify(job.body)).toBe(200)
    expect(claimsOf(job.body.access_token as string)).toMatchObject({ aud: 'https://storage.cloud-a.example.org', scope: expect.stringContaining('storage.read:/store/user/alice') })

    const vault = await cli(['credential-storer', '--print', '--mode', 'vault', '--force', '--broker', e.broker.url.replace('127.0.0.1', 'localhost'), '--ca-file', caFile, 'cms'], { BEARER_TOKEN: accessToken })
    const top = JSON.parse(vault.out) as { vault_token: string; vault_url: string }
    const path = new URL(top.vault_url).pathname
    const r = await get(e.broker.vaultUrl!, `${path}?minimum_seconds=2400`, { 'X-Vault-Token': top.vault_token })
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    expect(typeof (r.body.data as { access_token: unknown }).access_token).toBe('string')

    const storage = await cli(['credential-storer', '--print', '--broker', e.broker.url.replace('127.0.0.1', 'localhost'), '--ca-file', caFile, 'storage'], { BEARER_TOKEN: accessToken })
    expect(storage.code).toBe(0)
    const sci = await get(e.broker.url, '/v1/credentials/alice/storage/token?scopes=storage.read:/store/user/alice', { authorization: `Bearer ${creddToken()}` })
    expect(sci.status, JSON.stringify(sci.body)).toBe(200)
    expect(claimsOf(sci.body.access_token as string)).toMatchObject({ iss: e.broker.services.config.issuer, sub: 'alice@pool.example.org', scope: 'storage.read:/store/user/alice' })
  })

  it('shows the Vault-compatible listener the renewed certificate after a reload, as the main one', async () => {
    const fingerprint = (url: string) => new Promise<string>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: Number(new URL(url).port), servername: 'localhost', rejectUnauthorized: false }, () => {
        resolve(s.getPeerCertificate().fingerprint256)
        s.end()
      })
      s.on('error', reject)
    })
    const renewed = await ensureDevTls(join(tempDir('ctb-renewed-'), 'tls'))
    writeFileSync(join(e.dir, 'data/tls/server.key'), readFileSync(renewed.keyFile), { mode: 0o600 })
    writeFileSync(join(e.dir, 'data/tls/server.crt'), readFileSync(renewed.certFile))
    const result = await e.broker.reload('test')
    expect(result.tls).toMatchObject({ ok: true, reloaded: true })
    const expected = new X509Certificate(readFileSync(renewed.certFile)).fingerprint256
    expect(await fingerprint(e.broker.url)).toBe(expected)
    expect(await fingerprint(e.broker.vaultUrl!)).toBe(expected)
  })
})
