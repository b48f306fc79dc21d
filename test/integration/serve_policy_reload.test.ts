import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { freePort } from '../support/peers.ts'
import { startServeProcess, stopServeProcess } from '../support/serve_process.ts'

/** SIGHUP reloads policies in a running broker; an invalid policy is refused and the old one kept. Both are audited. */
describe('serve reloads policies on SIGHUP', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-hup-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('applies a valid change, keeps the old policy on a broken one, and audits both', async () => {
    const policies = join(dir, 'policies')
    cpSync(join(import.meta.dirname, '../../policies'), policies, { recursive: true })
    const env = {
      ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_POLICY_DIR: policies, CTB_POLICY_WATCH: 'false',
      CTB_LISTEN_PORT: String(await freePort()), CTB_DEV_IAM_PORT: String(await freePort()),
    }
    const broker = await startServeProcess(env)
    const waitFor = async (pattern: RegExp) => {
      for (let i = 0; i < 100 && !pattern.test(broker.stderrText()); i++) await new Promise((r) => setTimeout(r, 50))
      expect(broker.stderrText()).toMatch(pattern)
    }
    try {
      const file = join(policies, '10-cloud-htc.yaml')
      writeFileSync(file, readFileSync(file, 'utf8').replace('lifetime: { default: 1d, max: 7d }', 'lifetime: { default: 2h, max: 7d }'))
      broker.kill('SIGHUP')
      await waitFor(/"msg":"policy reloaded"/)
      writeFileSync(join(policies, '00-admin.yaml'), `${readFileSync(join(policies, '00-admin.yaml'), 'utf8')}\nrules: bogus\n`)
      broker.kill('SIGHUP')
      await waitFor(/policy reload refused; keeping the previous policy/)
    } finally {
      await stopServeProcess(broker)
    }
    const store = new SqliteStore({ file: join(dir, 'data', 'audit.db'), writer: 'inline' })
    try {
      const page = await store.query({ limit: 10, type: 'policy.reloaded' })
      expect(page.records.map((r) => [r.event.decision, r.event.reason])).toEqual([
        ['deny', 'sighup: refused, previous policy kept'],
        ['allow', expect.stringMatching(/^sighup: \d+ rules$/)],
      ])
    } finally {
      await store.close()
    }
  })
})
