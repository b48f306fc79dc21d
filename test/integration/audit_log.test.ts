import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll } from 'vitest'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { auditStoreContract } from './audit_log.contract.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-audit-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let n = 0
let file = ''
const raw = (fn: (db: DatabaseSync) => void) => {
  const db = new DatabaseSync(file)
  try { fn(db) } finally { db.close() }
}

for (const writer of ['thread', 'inline'] as const) {
  auditStoreContract(`sqlite (${writer} writer)`, {
    async open() {
      file = join(dir, `audit-${++n}.db`)
      return new SqliteStore({ file, writer })
    },
    async openPeer() {
      return new SqliteStore({ file, writer })
    },
    tamper: {
      async setBody(seq, body) { raw((db) => db.prepare('UPDATE audit_log SET body = ? WHERE seq = ?').run(body, seq)) },
      async setColumn(seq, col, value) { raw((db) => db.prepare(`UPDATE audit_log SET ${col} = ? WHERE seq = ?`).run(value, seq)) },
      async deleteRecord(seq) { raw((db) => db.prepare('DELETE FROM audit_log WHERE seq = ?').run(seq)) },
    },
    async breakWrites() {
      raw((db) => db.exec("CREATE TRIGGER fail_insert BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END"))
    },
  })
}

let mem: MemoryStore
auditStoreContract('memory', {
  async open() { mem = new MemoryStore(); return mem },
  tamper: {
    async setBody(seq, body) { mem.rawRows().find((r) => r.seq === seq)!.body = body },
    async setColumn(seq, col, value) { mem.rawRows().find((r) => r.seq === seq)![col] = value },
    async deleteRecord(seq) { const rows = mem.rawRows(); rows.splice(rows.findIndex((r) => r.seq === seq), 1) },
  },
})
