import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { freePort } from '../support/peers.ts'
import { BIN, startdExchangeBody, startServeProcess as serve, stopServeProcess } from '../support/serve_process.ts'

function post(url: string, body: string, ca: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ca, headers: { 'content-type': 'application/x-www-form-urlencoded' }, timeout: 10_000 }, (res) => {
      let text = ''
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end(body)
  })
}

/**
 * SIGKILL the real broker in the middle of concurrent POST /token; after a restart the
 * audit chain verifies and every token a client received has its committed record.
 */
describe('serve killed with SIGKILL during concurrent issuance', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-kill-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('loses no record of a token that left the broker', async () => {
    const port = await freePort()
    const iamPort = await freePort()
    const env = { ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false' }
    const broker = await serve(env)
    const ca = readFileSync(join(dir, 'data/tls/dev-ca.crt'))
    const body = await startdExchangeBody(iamPort)

    const received: string[] = []
    let killed = false
    const worker = async () => {
      for (let i = 0; i < 5000 && !killed; i++) {
        try {
          const r = await post(`https://127.0.0.1:${port}/token`, body, ca)
          if (r.status === 200) received.push((JSON.parse(r.text) as { access_token: string }).access_token)
        } catch {
          return // the broker is gone
        }
      }
    }
    const load = Promise.all(Array.from({ length: 24 }, worker))
    // Kill once a good number of tokens are out and many requests are in flight.
    for (let i = 0; i < 200 && received.length < 300; i++) await new Promise((r) => setTimeout(r, 25))
    broker.kill('SIGKILL')
    killed = true
    await load
    expect(received.length).toBeGreaterThanOrEqual(300)

    // Restart on the same data directory: it must start, and the chain must verify.
    const again = await serve(env)
    const verify = spawnSync(process.execPath, [BIN, 'audit', 'verify'], { env, encoding: 'utf8', timeout: 60_000 })
    await stopServeProcess(again)
    expect(verify.stdout, verify.stderr).toMatch(/audit chain OK/)
    expect(verify.status).toBe(0)

    const store = new SqliteStore({ file: join(dir, 'data', 'audit.db'), writer: 'inline' })
    try {
      const recorded = new Set<string>()
      for await (const r of store.scan()) if (r.event.tokenSha256) recorded.add(r.event.tokenSha256)
      const missing = received.filter((t) => !recorded.has(createHash('sha256').update(t).digest('hex')))
      expect(missing).toEqual([])
    } finally {
      await store.close()
    }
  })
})
