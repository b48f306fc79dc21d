import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { openBrokerStore } from '../../src/storage/open_store.ts'
import { tempDir } from '../support/tmp.ts'

// audit.sqlite.writer trades the writer and checkpointer threads (their memory) for commits on the
// event loop; either way a record is committed before its write resolves.
describe('audit.sqlite.writer', () => {
  const open = async (env: Record<string, string>) => {
    const dir = tempDir()
    const config = loadConfig({ env: { CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', ...env } })
    return openBrokerStore(config) as Promise<SqliteStore>
  }

  it('starts the writer thread by default', async () => {
    const store = await open({})
    try {
      expect(store.writerThread).toBeDefined()
    } finally {
      await store.close()
    }
  })

  it('commits on the main thread, with no worker, when set to inline', async () => {
    const store = await open({ CTB_AUDIT_SQLITE_WRITER: 'inline' })
    try {
      expect(store.writerThread).toBeUndefined()
      await store.record({ type: 'token.issued', time: 1_800_000_000, decision: 'allow', role: 'startd' })
      expect((await store.verify()).ok).toBe(true)
      // With the record that opens the MAC era before it (docs/audit.md, "Record MACs").
      expect((await store.query({ limit: 10 })).records.map((r) => r.event.type)).toEqual(['token.issued', 'audit.macs_started'])
    } finally {
      await store.close()
    }
  })

  it('refuses a value it does not know', () => {
    expect(() => loadConfig({ env: { CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_SQLITE_WRITER: 'forked' } })).toThrow(/audit\.sqlite\.writer/)
  })
})
