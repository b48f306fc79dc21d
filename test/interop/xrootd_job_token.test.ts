import { spawn } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCredmon, credmonFetch } from '../../src/clients/credmon/index.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { claimsOf, exchangeForm, JWT, startE2e, type E2e } from '../support/broker_e2e.ts'
import { startJobCredentialsDouble } from '../support/job_credentials_double.ts'
import { freePort, requireTool } from '../support/peers.ts'
import { trustSystemCa } from '../support/system_ca.ts'
import { putStoreFile, startXrootd, XROOTD_HTTPS_PORT, type RunningXrootd } from '../support/xrootd.ts'

const WRAPPER = join(import.meta.dirname, '../../src/clients/credmon/job_wrapper.sh')
const AUD = `https://localhost:${XROOTD_HTTPS_PORT}`
// WLCG storage scopes are relative to the issuer's base path at the storage (/store here).
const SCOPES = 'compute.read storage.read:/alice storage.create:/alice storage.modify:/alice'

/** A policy granting SciTokens with storage scopes for alice's own area at the test storage. */
const STORAGE_POLICY = `version: 1
description: Storage tokens for jobs (interop test)
rules:
  - id: storage-users
    description: Members of /htc/users read and write their own area at the test storage.
    match:
      issuer: \${IAM_ISSUER}
      groups: [/htc/users]
    grants:
      - role: job-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        profile: wlcg
        # compute.read rides along: a SciToken grant must carry a compute or condor scope today.
        scopes: [compute.read, "storage.read:/alice", "storage.create:/alice", "storage.modify:/alice"]
        audiences: ["${AUD}"]
        lifetime: { default: 20m, max: 1h }
`

/**
 * End to end at the job's edge: a WLCG token minted by the broker for storage scopes, handed to a job
 * stand-in as HTCondor does ($_CONDOR_CREDS/scitokens.use) and started through the job wrapper, is used
 * with curl against a real XRootD that verifies it with the SciTokens plugin, fetching the broker's keys
 * through discovery over HTTPS.
 */
describe('job token at a real XRootD (SciTokens plugin) through the job wrapper', () => {
  let e: E2e
  let x: RunningXrootd
  let untrust: () => void = () => {}
  let sandbox: string
  let token: string

  beforeAll(async () => {
    requireTool('curl', 'curl')
    requireTool('dash', 'dash')
    const port = await freePort()
    const policies = mkdtempSync(join(tmpdir(), 'ctb-xrd-policies-'))
    writeFileSync(join(policies, '40-storage.yaml'), STORAGE_POLICY)
    e = await startE2e({ CTB_LISTEN_PORT: String(port), CTB_ISSUER: `https://localhost:${port}`, CTB_POLICY_DIR: policies })
    untrust = trustSystemCa(e.broker.devCaFile!)
    x = await startXrootd({ issuer: `https://localhost:${port}` })
    putStoreFile(x, 'store/alice/hello.txt', 'hello from alice\n')
    putStoreFile(x, 'store/bob/secret.txt', 'bob only\n')
    const res = await e.post('/token', exchangeForm(await e.user('alice'), 'job-storage', { requested_token_type: JWT, audience: AUD, scope: SCOPES }))
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    token = res.body.access_token as string
    sandbox = mkdtempSync(join(tmpdir(), 'ctb-xrd-job-'))
    mkdirSync(join(sandbox, '.condor_creds'))
    writeFileSync(join(sandbox, '.condor_creds', 'scitokens.use'), JSON.stringify({ access_token: token, expires_in: 1200 }), { mode: 0o600 })
  }, 120_000)

  afterAll(async () => {
    untrust()
    await x?.close()
    await e?.close()
    if (sandbox) rmSync(sandbox, { recursive: true, force: true })
  })

  /** Runs one curl in the job stand-in, started through the wrapper inside XRootD's namespace; returns the HTTP status. */
  async function job(curlArgs: string, opts: { presentToken?: boolean; creds?: string } = {}): Promise<{ status: string; out: string }> {
    const auth = opts.presentToken === false ? '' : '-H "Authorization: Bearer $(cat "$BEARER_TOKEN_FILE")"'
    const script = `set -u; [ -r "$BEARER_TOKEN_FILE" ] || exit 90
curl -sS --cacert "$XRD_CA" -o "$OUT" -w '%{http_code}' ${auth} ${curlArgs}`
    const out = join(sandbox, `out-${Math.random().toString(36).slice(2)}`)
    const [cmd, ...args] = x.inNetns(['dash', WRAPPER, 'sh', '-c', script])
    const env = { PATH: process.env.PATH, _CONDOR_CREDS: opts.creds ?? join(sandbox, '.condor_creds'), _CONDOR_SCRATCH_DIR: sandbox, XRD_CA: x.caFile, OUT: out }
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(cmd!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      p.stdout.on('data', (c) => { stdout += c })
      p.stderr.on('data', (c) => { stderr += c })
      p.on('close', (code) => resolve({ code, stdout, stderr }))
    })
    expect(r.code, `${r.stderr}\n${x.log().slice(-1500)}`).toBe(0)
    let body = ''
    try { body = readFileSync(out, 'utf8') } catch { body = '' }
    return { status: r.stdout, out: body }
  }

  it('the token carries the storage scopes and the storage audience', () => {
    const c = claimsOf(token)
    expect(c.aud).toBe(AUD)
    expect(String(c.scope).split(' ').sort()).toEqual(SCOPES.split(' ').sort())
  })

  it('reads a file within its scope', async () => {
    const r = await job(`${AUD}/store/alice/hello.txt`)
    expect(r.status, x.log().slice(-1500)).toBe('200')
    expect(r.out).toBe('hello from alice\n')
  }, 60_000)

  it('writes a file within its scope', async () => {
    const r = await job(`-T /etc/hostname ${AUD}/store/alice/written.txt`)
    expect(['200', '201']).toContain(r.status)
    expect(readFileSync(join(x.dataDir, 'store/alice/written.txt'), 'utf8')).toBe(readFileSync('/etc/hostname', 'utf8'))
  }, 60_000)

  it('is refused without the token: the storage enforces tokens at all', async () => {
    expect((await job(`${AUD}/store/alice/hello.txt`, { presentToken: false })).status).toBe('403')
  }, 60_000)

  it('is refused outside its path, for reading and for writing', async () => {
    expect((await job(`${AUD}/store/bob/secret.txt`)).status).toBe('403')
    expect((await job(`-T /etc/hostname ${AUD}/store/bob/planted.txt`)).status).toBe('403')
  }, 60_000)

  // The chain with our credmon in it. The broker's job-token route is stood in for by the contract double,
  // which mints each token through the real broker (POST /token) with the .top's scopes and audience;
  // everything after it is the production path: credmon → .use → (starter copy) → wrapper → XRootD.
  it('our credmon fills .use from the job-token read, the job uses it at XRootD, and a revocation removes it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ctb-xrd-chain-'))
    const credd = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjcmVkZCJ9.c2ln'
    const double = await startJobCredentialsDouble(join(root, 'tls'), credd, async (user, _provider, q) => {
      const r = await e.post('/token', exchangeForm(await e.user(user), 'job-storage', { requested_token_type: JWT, audience: q.audience!, scope: q.scopes! }))
      if (r.status !== 200) throw new Error(`broker refused: ${JSON.stringify(r.body)}`)
      return { access_token: r.body.access_token as string, expires_in: r.body.expires_in as number, scope: q.scopes! }
    })
    try {
      const credDir = join(root, 'oauth_credentials')
      mkdirSync(join(credDir, 'alice'), { recursive: true })
      writeFileSync(join(credDir, 'alice', 'scitokens.top'), JSON.stringify({ broker_url: double.url, user: 'alice', provider: 'scitokens', scopes: SCOPES, audience: AUD }))
      writeFileSync(join(root, 'credd.token'), credd, { mode: 0o600 })
      const credmon = createCredmon({ credDir, brokerUrl: double.url, providers: ['scitokens'], tokenFile: join(root, 'credd.token'), useFormat: 'json' }, silentLogger, credmonFetch(double.caFile))
      expect(await credmon.scan()).toEqual({ refreshed: 1, failed: 0, removed: 0 })

      // The starter's part: copy <user>/<provider>.use into the job's $_CONDOR_CREDS.
      const jobCreds = join(root, 'job_creds')
      mkdirSync(jobCreds)
      copyFileSync(join(credDir, 'alice', 'scitokens.use'), join(jobCreds, 'scitokens.use'))
      const read = await job(`${AUD}/store/alice/hello.txt`, { creds: jobCreds })
      expect(read.status).toBe('200')
      expect(read.out).toBe('hello from alice\n')
      expect((await job(`${AUD}/store/bob/secret.txt`, { creds: jobCreds })).status).toBe('403')

      // Revoked at the broker: at its next refresh the credmon removes the .use.
      double.mode = 'revoked'
      writeFileSync(join(credDir, 'alice', 'scitokens.top'), JSON.stringify({ broker_url: double.url, user: 'alice', provider: 'scitokens', scopes: SCOPES, audience: AUD, renewed: true }))
      expect(await credmon.scan()).toEqual({ refreshed: 0, failed: 1, removed: 1 })
      expect(existsSync(join(credDir, 'alice', 'scitokens.use'))).toBe(false)
    } finally {
      await double.close()
      rmSync(root, { recursive: true, force: true })
    }
  }, 60_000)
})
