import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startJobCredentialsDouble, type JobCredentialsDouble } from '../support/job_credentials_double.ts'
import { BIN } from '../support/serve_process.ts'
import { tempDir } from '../support/tmp.ts'

const CREDD_TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjcmVkZCJ9.credd-sig'

let running: ChildProcess[] = []
let doubles: JobCredentialsDouble[] = []
afterEach(async () => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  for (const d of doubles.splice(0)) await d.close()
})

async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  for (let i = 0; i < ms / 50 && !cond(); i++) await new Promise((r) => setTimeout(r, 50))
  return cond()
}

async function setup() {
  const root = tempDir('ctb-credmon-it-')
  const credDir = join(root, 'oauth_credentials')
  mkdirSync(credDir, { mode: 0o700 })
  const tokenFile = join(root, 'credd.token')
  writeFileSync(tokenFile, `${CREDD_TOKEN}\n`, { mode: 0o600 })
  const double = await startJobCredentialsDouble(join(root, 'tls'), CREDD_TOKEN)
  doubles.push(double)
  const top = (user: string, extra: Record<string, string> = {}) => {
    mkdirSync(join(credDir, user), { recursive: true })
    writeFileSync(join(credDir, user, 'scitokens.top'), JSON.stringify({ broker_url: double.url, user, provider: 'scitokens', ...extra }))
  }
  const start = (interval: number) => {
    const child = spawn(process.execPath, [BIN, 'credmon', '--broker', double.url, '--ca-file', double.caFile, '--providers', 'scitokens',
      '--cred-dir', credDir, '--token-file', tokenFile, '--interval', String(interval)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr!.on('data', (c) => { stderr += c })
    running.push(child)
    return { child, stderr: () => stderr }
  }
  const use = (user: string) => join(credDir, user, 'scitokens.use')
  return { credDir, double, top, start, use }
}

/** A credmon scanning every second for alice, whose tokens live 2 s, once it wrote her first .use. */
async function aliceRefreshingEverySecond() {
  const s = await setup()
  s.double.expiresIn = 2
  s.top('alice')
  const p = s.start(1)
  expect(await until(() => existsSync(s.use('alice'))), p.stderr()).toBe(true)
  return { s, p, before: readFileSync(s.use('alice'), 'utf8') }
}

describe('credmon against a contract double of the broker (HTTPS on loopback)', () => {
  it('writes pid, the .use and CREDMON_COMPLETE, presenting the credd token and the .top scopes', async () => {
    const s = await setup()
    s.top('alice', { scopes: 'storage.read:/store', audience: 'https://xrd.example.org' })
    const p = s.start(3600)
    expect(await until(() => existsSync(join(s.credDir, 'CREDMON_COMPLETE'))), p.stderr()).toBe(true)
    expect(readFileSync(join(s.credDir, 'pid'), 'utf8')).toBe(String(p.child.pid))
    const use = JSON.parse(readFileSync(s.use('alice'), 'utf8')) as Record<string, unknown>
    expect(Object.keys(use).sort()).toEqual(['access_token', 'expires_in'])
    expect(use.expires_in).toBe(1200)
    expect(s.double.requests).toEqual([{ path: '/v1/credentials/alice/scitokens/token', bearer: CREDD_TOKEN, query: { scopes: 'storage.read:/store', audience: 'https://xrd.example.org' } }])
  })

  it('scans again on SIGHUP and stops on SIGTERM', async () => {
    const s = await setup()
    s.top('alice')
    const p = s.start(3600)
    expect(await until(() => existsSync(s.use('alice'))), p.stderr()).toBe(true)
    s.top('bob')
    p.child.kill('SIGHUP')
    // The next timed scan is an hour away: only SIGHUP can bring bob's token this soon.
    expect(await until(() => existsSync(s.use('bob')), 5000), p.stderr()).toBe(true)
    const exited = new Promise<number | null>((r) => p.child.once('exit', (code) => r(code)))
    p.child.kill('SIGTERM')
    expect(await exited).toBe(0)
  })

  it('keeps the .use through an outage, then removes only the .use on a refusal that does not say the credential is gone', async () => {
    const { s, p, before } = await aliceRefreshingEverySecond()
    s.double.mode = 'unavailable'
    const n = s.double.requests.length
    expect(await until(() => s.double.requests.length > n)).toBe(true)
    expect(await until(() => p.stderr().includes('broker unavailable'))).toBe(true)
    expect(readFileSync(s.use('alice'), 'utf8')).toBe(before)

    // A new .top (re-registration) is served at once, whatever the backoff; the broker now refuses it by policy.
    s.double.mode = 'refused'
    s.top('alice', { scopes: 'storage.read:/x' })
    p.child.kill('SIGHUP')
    expect(await until(() => !existsSync(s.use('alice'))), p.stderr()).toBe(true)
    // The log line follows the unlink asynchronously (lines leave at the end of the credmon's event-loop turn).
    const removed = 'credmon: removed alice/scitokens.use: the broker refused the credential (access_denied: the policy no longer grants this credential)'
    expect(await until(() => p.stderr().includes(removed)), p.stderr()).toBe(true)
    // The credential is still there at the broker: the credd keeps holding it, for when the policy is fixed.
    expect(existsSync(join(s.credDir, 'alice', 'scitokens.top'))).toBe(true)
  }, 30_000)

  it('removes the .use and the .top when the broker says the credential is revoked, as HTCondor\'s Vault credmon does', async () => {
    const { s, p } = await aliceRefreshingEverySecond()
    s.top('bob')
    s.double.mode = 'revoked'
    p.child.kill('SIGHUP')
    expect(await until(() => !existsSync(join(s.credDir, 'alice', 'scitokens.top')) && !existsSync(join(s.credDir, 'bob', 'scitokens.top'))), p.stderr()).toBe(true)
    expect(existsSync(s.use('alice'))).toBe(false)
    const removed = 'credmon: removed alice/scitokens.use and alice/scitokens.top: the broker says the credential is revoked (access_denied: credential alice/scitokens revoked); alice\'s next condor_submit registers it again'
    expect(await until(() => p.stderr().includes(removed)), p.stderr()).toBe(true)
    expect(await until(() => p.stderr().includes('credmon: removed bob/scitokens.top: the broker says the credential is revoked')), p.stderr()).toBe(true)
    // The user directories stay: they are the credd's.
    expect(existsSync(join(s.credDir, 'alice'))).toBe(true)
  }, 30_000)

  it('keeps the .use and logs an error when the broker refuses the credmon\'s own token', async () => {
    const { s, p, before } = await aliceRefreshingEverySecond()
    s.double.mode = 'bad-credential'
    expect(await until(() => p.stderr().includes('the broker refused the credmon\'s own token')), p.stderr()).toBe(true)
    expect(p.stderr()).toMatch(/"level":"error"[^\n]*own token|own token[^\n]*"level":"error"/)
    expect(readFileSync(s.use('alice'), 'utf8')).toBe(before)
  }, 30_000)

  it('fails with one line and status 2 on bad options', async () => {
    const s = await setup()
    const child = spawn(process.execPath, [BIN, 'credmon', '--broker', s.double.url, '--providers', 'sci_tokens'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', (c) => { err += c })
    const code = await new Promise<number | null>((r) => child.once('exit', r))
    expect(code).toBe(2)
    expect(err.trim().split('\n')).toHaveLength(1)
    expect(err).toContain('"sci_tokens" is not a provider name')
  })
})
