import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { freePort } from '../support/peers.ts'
import { loadUntilStopped } from '../support/serve_load.ts'
import { startdExchangeBody, startServeProcess } from '../support/serve_process.ts'

/**
 * SIGTERM while 24 clients keep POST /token busy: the listener stops accepting, the requests already in
 * flight finish with a complete response, their audit records are committed, and the process exits 0
 * within the grace, saying it stopped cleanly.
 */
describe('serve on SIGTERM during load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-term-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('loses no audit record and resets no request in flight', async () => {
    const port = await freePort()
    const iamPort = await freePort()
    const env = {
      ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort),
      CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false', CTB_SHUTDOWN_GRACE_SECONDS: '10',
    }
    const broker = await startServeProcess(env)
    const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((r) => broker.once('exit', (code, signal) => r({ code, signal, at: Date.now() })))
    const ca = readFileSync(join(dir, 'data/tls/dev-ca.crt'))
    const body = await startdExchangeBody(iamPort)

    const { outcomes, stop } = await loadUntilStopped(`https://127.0.0.1:${port}/token`, body, ca, 24, 100)
    const termAt = Date.now()
    broker.kill('SIGTERM')
    const exit = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000))])
    await stop()

    expect(exit, 'serve did not exit').toBeDefined()
    expect(exit!.code, broker.stderrText().slice(-600)).toBe(0)
    expect(exit!.at - termAt).toBeLessThan(10_000)
    expect(outcomes.filter((o) => o.kind === 'reset')).toEqual([])
    const done = outcomes.filter((o) => o.kind === 'complete')
    expect(done.every((o) => o.status === 200), JSON.stringify(done.find((o) => o.status !== 200))).toBe(true)
    // Requests in flight at the signal were answered, not cut: some responses ended after it.
    expect(done.some((o) => o.endedAt > termAt)).toBe(true)
    expect(broker.stdoutText()).toMatch(/stopped cleanly/)

    const store = new SqliteStore({ file: join(dir, 'data', 'audit.db'), writer: 'inline' })
    try {
      const recorded = new Set<string>()
      for await (const r of store.scan()) if (r.event.type === 'token.issued' && r.event.tokenSha256) recorded.add(r.event.tokenSha256)
      const tokens = done.map((o) => (JSON.parse(o.text) as { access_token: string }).access_token)
      const missing = tokens.filter((t) => !recorded.has(createHash('sha256').update(t).digest('hex')))
      expect(missing).toEqual([])
      expect(recorded.size).toBe(tokens.length)
    } finally {
      await store.close()
    }
  }, 90_000)
})
