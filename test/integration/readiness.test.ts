import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { startE2e, type E2e } from '../support/broker_e2e.ts'
import { refusedUrl } from '../support/loopback_failures.ts'
import { tempDir } from '../support/tmp.ts'

const event = { type: 'token.issued', time: 1_800_000_000, decision: 'allow' } as const

describe('/readyz tells the truth', () => {
  let e2e: E2e | undefined
  afterEach(async () => { await e2e?.close(); e2e = undefined })

  it('is ready with keys and audit ok, and reports the development IAM as reachable beside it', async () => {
    e2e = await startE2e()
    const r = await e2e.get('/readyz')
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({
      status: 'ready',
      checks: { keys: 'ok', audit: 'ok' },
      iam: { [e2e.devIam.issuer]: { discovery: 'ok', jwks: 'ok' } },
    })
  })

  it('is not ready once the audit writer thread has died, and issuance fails closed', async () => {
    e2e = await startE2e()
    const store = e2e.broker.services.store as SqliteStore
    await store.writerThread!.terminate()
    const r = await e2e.get('/readyz')
    expect(r.status).toBe(503)
    expect(r.body.status).toBe('not_ready')
    expect((r.body.checks as Record<string, string>).audit).toBe('the audit writer thread has stopped')
    await expect(store.record(event)).rejects.toThrow(/stopped/)
  })

  it('is not ready after a failed commit, and ready again once a commit succeeds', async () => {
    e2e = await startE2e()
    const store = e2e.broker.services.store
    // Another connection makes the writer's next insert fail inside its transaction, as a full disk would.
    const db = new DatabaseSync(join(e2e.env.CTB_DATA_DIR!, 'audit.db'))
    try {
      db.exec("CREATE TRIGGER fail_insert BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'injected write failure'); END")
      await expect(store.record(event)).rejects.toThrow(/injected write failure/)
      const down = await e2e.get('/readyz')
      expect(down.status).toBe(503)
      // Fixed words (docs/audit.md): the store's own message stays in the log.
      expect((down.body.checks as Record<string, string>).audit).toMatch(/^the last audit commit failed \d+ s ago$/)
      db.exec('DROP TRIGGER fail_insert')
    } finally {
      db.close()
    }
    await store.record(event)
    const up = await e2e.get('/readyz')
    expect(up.status).toBe(200)
    expect((up.body.checks as Record<string, string>).audit).toBe('ok')
  })

  it('reports an unreachable IAM separately: still ready, the IAM entry names the cause', async () => {
    const issuer = await refusedUrl('/')
    const dir = tempDir()
    const file = join(dir, 'broker.yaml')
    writeFileSync(file, `iam:\n  issuers:\n    - issuer: ${issuer}\n`)
    e2e = await startE2e({ CTB_CONFIG: file })
    const r = await e2e.get('/readyz')
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({ status: 'ready', checks: { keys: 'ok', audit: 'ok' } })
    expect((r.body.iam as Record<string, unknown>)[issuer]).toMatchObject({ discovery: 'refused', jwks: 'not tried: discovery failed' })
  })

  it('names no discovery URL on the open /readyz when IAM names another issuer (it is in the log)', async () => {
    // /readyz answers without auth. discovery_url may be an address inside the site (docs/iam.md); a
    // mismatch is the operator's to fix from the log and `iam check`, not a load balancer's to read.
    const secretPath = '/inside-only-7f3a/.well-known/openid-configuration'
    const iam: Server = createServer((req, res) => {
      res.writeHead(req.url === secretPath ? 200 : 404, { 'content-type': 'application/json' })
      res.end(req.url === secretPath ? JSON.stringify({ issuer: 'https://other-iam.example.org/', jwks_uri: 'https://other-iam.example.org/jwk' }) : '{}')
    })
    await new Promise<void>((resolve) => iam.listen(0, '127.0.0.1', resolve))
    try {
      const base = `http://127.0.0.1:${(iam.address() as AddressInfo).port}`
      const issuer = `${base}/`
      const file = join(tempDir(), 'broker.yaml')
      writeFileSync(file, `iam:\n  issuers:\n    - issuer: ${issuer}\n      discovery_url: ${base}${secretPath}\n      development: true\n      allow_any_audience: true\n`)
      e2e = await startE2e({ CTB_CONFIG: file })
      const r = await e2e.get('/readyz')
      expect(r.status).toBe(200)
      const entry = (r.body.iam as Record<string, { discovery: string }>)[issuer]!
      expect(JSON.stringify(r.body)).not.toContain('inside-only-7f3a')
      // The words a caller of the API is given for the same cause (docs/iam.md, "Discovery").
      expect(entry.discovery).toBe('IAM discovery does not match the configured issuer')
    } finally {
      await new Promise((resolve) => iam.close(resolve))
    }
  })
})
