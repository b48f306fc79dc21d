// Start-up cost of the revocation check on a large log: fills an SQLite store with N records (a few of
// them revocations), then times `serve` from spawn to "serving at", twice (the second start finds the
// anchor the first one wrote). Usage: node bench/startup_revocations.ts [records] [dir]
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SqliteStore } from '../src/storage/sqlite_store.ts'

const n = Number(process.argv[2] ?? 100_000)
const dir = process.argv[3] ?? mkdtempSync(join(tmpdir(), 'ctb-startup-'))
const dataDir = join(dir, 'data')
const store = new SqliteStore({ file: join(dataDir, 'audit.db'), writer: 'inline', synchronous: 'normal' })
const t0 = 1_700_000_000
const batch: Promise<void>[] = []
for (let i = 1; i <= n; i++) {
  if (i % 10_000 === 0) await store.revoke({ kind: 'jti', value: `j${i}`, revokedAt: t0, until: t0 + 60 }, { type: 'token.revoked', time: t0, caller: { sub: 'bench' } })
  batch.push(store.record({ type: 'token.issued', time: t0 + i, caller: { iss: 'https://iam.example.org/', sub: `user-${i % 500}`, client_id: 'pilot' }, role: 'pilot', tokenKind: 'idtoken', issuedSub: `pilot-${i % 50}@pilots.example.org`, jti: `jti-${i}-${Math.random().toString(36).slice(2)}`, exp: t0 + i + 3600, decision: 'allow', scopes: ['condor:/READ', 'condor:/ADVERTISE_STARTD'], tokenSha256: 'f'.repeat(64), policyRule: 'pilots' }))
  if (batch.length >= 1000) { await Promise.all(batch); batch.length = 0 }
}
await Promise.all(batch)
await store.close()

const config = join(dir, 'broker.yaml')
writeFileSync(config, 'policy:\n  vars:\n    IAM_ISSUER: https://iam.example.org/\n')
const env = { ...process.env, CTB_CONFIG: config, CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0' }
const bin = join(import.meta.dirname, '../bin/condor-token-broker.js')

async function timeStart(): Promise<number> {
  const start = performance.now()
  const child = spawn(process.execPath, [bin, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c) => { err += c })
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => { if (c.toString().includes('serving at')) resolve() })
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${err.slice(-400)}`)))
  })
  const ms = performance.now() - start
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
  return ms
}
for (let i = 1; i <= 3; i++) console.log(`start ${i}: ${Math.round(await timeStart())} ms (${n} records)`)
