import { createHash } from 'node:crypto'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// Upgrading, and copying the audit MAC key to every replica, the admin's check is `keys list` on each
// host: it listed the HTCondor and SciToken keys but not the MAC key, so nothing showed whether a host
// had it, or the same one. The key id is docs/audit.md's: the first 16 hex digits of
// SHA-256("condor-token-broker audit MAC key id\n" || key), computed here from that formula.
const env = () => ({ CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' })

describe('keys list and the audit MAC key', () => {
  it('names the file and its key id', async () => {
    const e = env()
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const file = join(e.CTB_DATA_DIR, 'keys', 'audit_mac.key')
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64')
    const kid = createHash('sha256').update('condor-token-broker audit MAC key id\n').update(key).digest('hex').slice(0, 16)
    const list = await cli(['keys', 'list'], e)
    expect(list.code, list.err).toBe(0)
    expect(list.out.split('\n')).toContain(`audit MAC key: ${file}  mode 0600  key id ${kid}`)
  })

  it('says when there is none, and what to run', async () => {
    const e = env()
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const file = join(e.CTB_DATA_DIR, 'keys', 'audit_mac.key')
    rmSync(file)
    const list = await cli(['keys', 'list'], e)
    expect(list.code, list.err).toBe(0)
    expect(list.out.split('\n')).toContain(`audit MAC key: none at ${file} (run "condor-token-broker keys init" on the first broker and copy the file, mode 0600, to every replica and every host that runs the CLI)`)
  })
})
