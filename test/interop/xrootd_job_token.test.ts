import { spawn } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCredmon, credmonFetch } from '../../src/clients/credmon/index.ts'
import { devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { claimsOf, exchangeForm, IDTOKEN, JWT, startE2e, type E2e } from '../support/broker_e2e.ts'
import { cli } from '../support/cli.ts'
import { freePort, requireTool } from '../support/peers.ts'
import { trustSystemCa } from '../support/system_ca.ts'
import { putStoreFile, startXrootd, XROOTD_HTTPS_PORT, type RunningXrootd } from '../support/xrootd.ts'

const WRAPPER = join(import.meta.dirname, '../../src/clients/credmon/job_wrapper.sh')
const AUD = `https://localhost:${XROOTD_HTTPS_PORT}`
// WLCG storage scopes are relative to the issuer's base path at the storage (/store here).
const SCOPES = 'storage.read:/alice storage.create:/alice storage.modify:/alice'
/** Short, so a refresh and an expiry happen within the test. */
const JOB_TOKEN_SECONDS = 12

/** A storage-only grant: SciTokens for alice's own area at the test storage, and nothing for HTCondor. */
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
        scopes: ["storage.read:/alice", "storage.create:/alice", "storage.modify:/alice"]
        audiences: ["${AUD}"]
        lifetime: { default: ${JOB_TOKEN_SECONDS}s, max: 1h }
        fetched_by: { roles: [credd] }
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
    // The shipped access-point policy: it grants the credd its IDTOKEN.
    copyFileSync(join(import.meta.dirname, '../../policies/10-cloud-htc.yaml'), join(policies, '10-cloud-htc.yaml'))
    writeFileSync(`${policies}.broker.yaml`, 'credentials:\n  enabled: true\n  providers:\n    - { name: scitokens, kind: scitoken, role: job-storage }\n')
    e = await startE2e({ CTB_LISTEN_PORT: String(port), CTB_ISSUER: `https://localhost:${port}`, CTB_POLICY_DIR: policies, CTB_CONFIG: `${policies}.broker.yaml` })
    untrust = trustSystemCa(e.broker.devCaFile!)
    x = await startXrootd({ issuer: `https://localhost:${port}` })
    putStoreFile(x, 'store/alice/hello.txt', 'hello from alice\n')
    putStoreFile(x, 'store/bob/secret.txt', 'bob only\n')
    const res = await e.post('/token', exchangeForm(await e.user('alice'), 'job-storage', { requested_token_type: JWT, audience: AUD, scope: SCOPES, lifetime: '1200' }))
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

  /**
   * Runs one curl in the job stand-in, started through the wrapper inside XRootD's namespace; returns the
   * HTTP status. The job presents `$BEARER_TOKEN_FILE` when the wrapper gave it one.
   */
  async function job(curlArgs: string, opts: { presentToken?: boolean; creds?: string } = {}): Promise<{ status: string; out: string; hadToken: boolean }> {
    const auth = opts.presentToken === false ? '' : '${BEARER_TOKEN_FILE:+-H "Authorization: Bearer $(cat "$BEARER_TOKEN_FILE")"}'
    const script = `set -u; [ -z "\${BEARER_TOKEN_FILE:-}" ] || [ -r "$BEARER_TOKEN_FILE" ] || exit 90
[ -n "\${BEARER_TOKEN_FILE:-}" ] && echo token >&2
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
    return { status: r.stdout, out: body, hadToken: r.stderr.split('\n').includes('token') }
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

  // The chain with our credmon in it, every link the production one: credential-storer registers alice
  // at the broker; the credd's .top; our credmon reads the broker's job-token route with the credd's
  // IDTOKEN and writes .use; the starter's copy into the job's $_CONDOR_CREDS; the wrapper; XRootD.
  it('registration → credmon → .use → starter copy → wrapper → XRootD, and nothing after a revocation', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ctb-xrd-chain-'))
    try {
      const caFile = e.broker.devCaFile!
      // The broker's public URL (its issuer), as the .top and the credmon name it.
      const brokerUrl = e.broker.services.config.issuer
      const ap = await e.robot('ctb-cloud-a-ap')
      const credd = await e.post('/token', exchangeForm(ap, 'credd', { requested_token_type: IDTOKEN, host: 'ap1.cloud-a.example.org' }))
      expect(credd.status, JSON.stringify(credd.body)).toBe(200)
      writeFileSync(join(root, 'credd.token'), `${credd.body.access_token as string}\n`, { mode: 0o600 })

      const { accessToken } = await devIamUserToken(e.devIam, 'alice', { scope: 'openid profile wlcg wlcg.groups' })
      const stored = await cli(['credential-storer', '--print', '--broker', brokerUrl, '--ca-file', caFile, 'scitokens'], { BEARER_TOKEN: accessToken })
      expect(stored.err).toBe('')
      const credDir = join(root, 'oauth_credentials')
      mkdirSync(join(credDir, 'alice'), { recursive: true, mode: 0o700 })
      writeFileSync(join(credDir, 'alice', 'scitokens.top'), stored.out, { mode: 0o600 })
      expect(JSON.parse(stored.out)).toMatchObject({ broker_url: brokerUrl, user: 'alice', provider: 'scitokens' })

      const credmon = createCredmon({ credDir, brokerUrl, providers: ['scitokens'], tokenFile: join(root, 'credd.token'), useFormat: 'json' }, silentLogger, credmonFetch(caFile))
      const use = join(credDir, 'alice', 'scitokens.use')
      expect(await credmon.scan()).toEqual({ refreshed: 1, failed: 0, removed: 0 })
      const first = (JSON.parse(readFileSync(use, 'utf8')) as { access_token: string }).access_token
      const c = claimsOf(first)
      expect(c).toMatchObject({ iss: e.broker.services.config.issuer, aud: AUD, sub: 'alice@pool.example.org' })
      expect(String(c.scope).split(' ').sort()).toEqual(SCOPES.split(' ').sort())

      // The starter's part: copy <user>/<provider>.use into the job's $_CONDOR_CREDS.
      const starterCopy = (to: string) => {
        mkdirSync(to, { recursive: true })
        if (existsSync(use)) copyFileSync(use, join(to, 'scitokens.use'))
        return to
      }
      const jobCreds = starterCopy(join(root, 'job1_creds'))
      const read = await job(`${AUD}/store/alice/hello.txt`, { creds: jobCreds })
      expect(read.status).toBe('200')
      expect(read.out).toBe('hello from alice\n')
      const wrote = await job(`-T /etc/hostname ${AUD}/store/alice/by-job.txt`, { creds: jobCreds })
      expect(['200', '201']).toContain(wrote.status)
      expect((await job(`${AUD}/store/bob/secret.txt`, { creds: jobCreds })).status).toBe('403')

      // At half-life the credmon refreshes; the starter hands the running job the new token.
      await new Promise((r) => setTimeout(r, (JOB_TOKEN_SECONDS / 2 + 1) * 1000))
      expect(await credmon.scan()).toEqual({ refreshed: 1, failed: 0, removed: 0 })
      const second = (JSON.parse(readFileSync(use, 'utf8')) as { access_token: string }).access_token
      expect(second).not.toBe(first)
      starterCopy(jobCreds)

      const revoked = await cli(['credential', 'revoke', 'alice', 'scitokens'], e.env)
      expect(revoked.code, revoked.err).toBe(0)
      // The next refresh: the broker refuses the credential, and the credmon removes .use.
      await new Promise((r) => setTimeout(r, (JOB_TOKEN_SECONDS / 2 + 1) * 1000))
      expect(await credmon.scan()).toEqual({ refreshed: 0, failed: 1, removed: 1 })
      expect(existsSync(use)).toBe(false)

      // A job started now gets no token from the starter, so it has none to present, and is refused.
      const next = await job(`${AUD}/store/alice/hello.txt`, { creds: starterCopy(join(root, 'job2_creds')) })
      expect(next.hadToken).toBe(false)
      expect(next.status).toBe('403')
      // The running job still holds the last token it was handed; once that expires, storage refuses it.
      // (Presented here for the first time: XRootD keeps an accepted token cached for a while past its exp.)
      const exp = Number(claimsOf(second).exp)
      await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 1500))
      const late = await job(`${AUD}/store/alice/hello.txt`, { creds: jobCreds })
      expect(late.hadToken).toBe(true)
      expect(late.status).toBe('403')
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  }, 90_000)
})
