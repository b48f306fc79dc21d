import { spawn } from 'node:child_process'
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { expect, it } from 'vitest'
import { freePort } from '../support/peers.ts'
import { BIN, startdExchangeBody, startServeProcess, stopServeProcess } from '../support/serve_process.ts'
import { tempDir } from '../support/tmp.ts'

/*
 * The sealed anchor (and its copy in <data_dir>/audit_anchor) followed the log only at start and every
 * audit.anchor_interval (600 s). A copy of audit.db taken after the last check and put back while the broker
 * was stopped lost every record appended since, revocations included, and the next start found nothing amiss:
 * the copy held exactly what the anchor vouched for. Now the broker anchors soon after each revocation or
 * lift it commits, and once more at a clean stop.
 */

function brokerDirs(): { dataDir: string; env: NodeJS.ProcessEnv } {
  const dataDir = join(tempDir(), 'data')
  // `revoke` checks site and role names against the policies, which name the IAM issuer.
  const config = join(tempDir(), 'broker.yaml')
  writeFileSync(config, 'policy:\n  vars:\n    IAM_ISSUER: https://iam.example.org/\n')
  return {
    dataDir,
    env: {
      ...process.env, CTB_CONFIG: config, CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0',
      CTB_POLICY_WATCH: 'false', CTB_ADMIN_BOOTSTRAP_TOKEN_FILE: join(dataDir, '..', 'admin.token'),
    },
  }
}

function post(url: string, ca: Buffer, body: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ca, agent: false, headers, timeout: 20_000 }, (res) => {
      let text = ''
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end(body)
  })
}

/** POST /v1/revocations with the bootstrap token. */
async function revoke(url: string, dataDir: string, body: object): Promise<void> {
  const ca = readFileSync(join(dataDir, 'tls/dev-ca.crt'))
  const token = readFileSync(join(dataDir, '..', 'admin.token'), 'utf8').trim()
  const r = await post(`${url}/v1/revocations`, ca, JSON.stringify(body), { authorization: `Bearer ${token}`, 'content-type': 'application/json' })
  expect(r.status, r.text).toBe(201)
}

const urlOf = (stdout: string) => /serving at (https:\/\/\S+)/.exec(stdout)![1]!

/** A consistent copy of the live database (as an operator's backup job would take it). */
function backUp(dataDir: string, to: string): number {
  const db = new DatabaseSync(join(dataDir, 'audit.db'))
  try {
    db.exec(`VACUUM INTO '${to}'`)
    return Number((db.prepare('SELECT seq FROM audit_head WHERE id = 1').get() as { seq: number }).seq)
  } finally { db.close() }
}

function restore(dataDir: string, from: string): void {
  for (const f of ['audit.db-wal', 'audit.db-shm']) rmSync(join(dataDir, f), { force: true })
  copyFileSync(from, join(dataDir, 'audit.db'))
}

/** Waits (bounded) until the anchor's copy outside the database covers `seq`; goes on either way. */
async function anchoredUpTo(dataDir: string, seq: number): Promise<void> {
  const file = join(dataDir, 'audit_anchor')
  for (let i = 0; i < 100; i++) {
    if (existsSync(file) && readFileSync(file, 'utf8').includes(`"seq":${seq},`)) return
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Runs `serve` and resolves with how it ended; a serve that starts instead is stopped and reported as such. */
async function serveOutcome(env: NodeJS.ProcessEnv): Promise<{ code: number | null; refusal: string[]; started: boolean }> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c) => { stderr += c })
  const lines = () => stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'))
  let started = false
  return new Promise((resolve) => {
    const t = setTimeout(() => { child.kill('SIGKILL') }, 25_000)
    child.stdout.on('data', (c: Buffer) => {
      if (c.toString().includes('serving at')) { started = true; clearTimeout(t); void stopServeProcess(child) }
    })
    child.once('exit', (code) => { clearTimeout(t); resolve({ code: started ? null : code, refusal: lines(), started }) })
  })
}

const refusal = (end: number, verified: number) => 'condor-token-broker: the audit chain cannot vouch for the revocations table: '
  + `the audit log ends at seq ${end}, but an earlier check verified it up to seq ${verified} (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says); run "audit verify"`

it('a backup taken between two revocations and restored after a crash is refused at the next start', async () => {
  const { dataDir, env } = brokerDirs()
  const backup = join(tempDir(), 'audit-backup.db')
  const broker = await startServeProcess(env)
  let atBackup: number
  try {
    const url = urlOf(broker.stdoutText())
    await revoke(url, dataDir, { site: 'cloud-a', reason: 'compromised' })
    await anchoredUpTo(dataDir, 1)
    atBackup = backUp(dataDir, backup)
    await revoke(url, dataDir, { role: 'pilot' })
    await anchoredUpTo(dataDir, atBackup + 1)
  } finally {
    // Killed, not stopped: only the check after the revocation can have anchored it.
    await stopServeProcess(broker, 'SIGKILL')
  }
  restore(dataDir, backup)
  const serve = await serveOutcome(env)
  expect({ started: serve.started, code: serve.code, refusal: serve.refusal }).toEqual({ started: false, code: 1, refusal: [refusal(atBackup, atBackup + 1)] })
}, 90_000)

it('a backup taken before a clean stop (SIGTERM) and restored is refused at the next start', async () => {
  const { dataDir, env: withPolicyVars } = brokerDirs()
  // The default policies, which grant the development IAM's robots their roles.
  const { CTB_CONFIG: _policyVars, ...env } = withPolicyVars
  const iamPort = await freePort()
  const backup = join(tempDir(), 'audit-backup.db')
  const broker = await startServeProcess({ ...env, CTB_DEV_IAM_PORT: String(iamPort) })
  let atBackup: number
  try {
    // The start anchored the log as it is: a copy taken now holds just what the anchor vouches for.
    atBackup = backUp(dataDir, backup)
    const ca = readFileSync(join(dataDir, 'tls/dev-ca.crt'))
    const issued = await post(`${urlOf(broker.stdoutText())}/token`, ca, await startdExchangeBody(iamPort), { 'content-type': 'application/x-www-form-urlencoded' })
    expect(issued.status, issued.text).toBe(200)
  } finally {
    await stopServeProcess(broker, 'SIGTERM')
  }
  expect(broker.exitCode).toBe(0)
  // The token's record is gone with the restore, and so is any trace that it was ever issued. The log was
  // empty at the backup, so the token's record came after the audit.macs_started record of the first write.
  restore(dataDir, backup)
  const serve = await serveOutcome({ ...env, CTB_DEV_IAM_PORT: String(iamPort) })
  expect({ started: serve.started, code: serve.code, refusal: serve.refusal }).toEqual({ started: false, code: 1, refusal: [refusal(atBackup, atBackup + 2)] })
}, 90_000)
