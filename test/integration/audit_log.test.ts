import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll } from 'vitest'
import type { Revocation } from '../../src/revocation/revocation.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { auditStoreContract } from './audit_log.contract.ts'
import { pilotRedemptionContract } from './pilot_redemption.contract.ts'
import { pilotRenewalContract } from './pilot_renewal.contract.ts'
import { issuanceHorizonContract } from './issuance_horizon.contract.ts'

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
      async deleteRevocation(id) { raw((db) => db.prepare('DELETE FROM revocations WHERE id = ?').run(id)) },
      async insertRevocation(r) {
        raw((db) => db.prepare('INSERT INTO revocations (kind, value, revoked_at, until) VALUES (?, ?, ?, ?)').run(r.kind, r.value, r.revokedAt, r.until))
      },
      async setRevocationUntil(id, until) { raw((db) => db.prepare('UPDATE revocations SET until = ? WHERE id = ?').run(until, id)) },
      async deleteAnchor() { raw((db) => db.exec('DELETE FROM audit_anchor')) },
      async setTokenHorizonExp(exp) { raw((db) => db.prepare("UPDATE issuance_horizon SET exp = ? WHERE kind = 'token'").run(exp)) },
      async truncateTo(seq) {
        raw((db) => db.exec(`DELETE FROM audit_log WHERE seq > ${seq}; UPDATE audit_head SET seq = ${seq}, hash = (SELECT hash FROM audit_log WHERE seq = ${seq}) WHERE id = 1`))
      },
      async setRoleGeneration(role, gen) {
        raw((db) => gen === null
          ? db.prepare('DELETE FROM role_generations WHERE role = ?').run(role)
          : db.prepare('INSERT INTO role_generations (role, gen) VALUES (?, ?) ON CONFLICT (role) DO UPDATE SET gen = excluded.gen').run(role, gen))
      },
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
    async deleteRevocation(id) { const { revocations } = mem.rawRevocations(); revocations.splice(revocations.findIndex((r) => r.id === id), 1) },
    async insertRevocation(r) {
      const { revocations } = mem.rawRevocations()
      revocations.push({ ...r, kind: r.kind as Revocation['kind'], id: (revocations.at(-1)?.id ?? 0) + 1 })
    },
    async setRevocationUntil(id, until) { mem.rawRevocations().revocations.find((r) => r.id === id)!.until = until },
    async truncateTo(seq) { mem.rawTruncate(seq) },
    async deleteAnchor() { mem.rawDeleteAnchor() },
    async setTokenHorizonExp(exp) { mem.rawSetTokenHorizonExp(exp) },
    async setRoleGeneration(role, gen) { const { generations } = mem.rawRevocations(); if (gen === null) generations.delete(role); else generations.set(role, gen) },
  },
})

for (const writer of ['thread', 'inline'] as const) {
  pilotRedemptionContract(`sqlite (${writer} writer)`, {
    async open() {
      file = join(dir, `audit-${++n}.db`)
      return new SqliteStore({ file, writer })
    },
    async openPeer() {
      return new SqliteStore({ file, writer })
    },
  })
}
pilotRedemptionContract('memory', { async open() { return new MemoryStore() } })

for (const writer of ['thread', 'inline'] as const) {
  pilotRenewalContract(`sqlite (${writer} writer)`, {
    async open() {
      file = join(dir, `audit-${++n}.db`)
      return new SqliteStore({ file, writer })
    },
    async openPeer() {
      return new SqliteStore({ file, writer })
    },
  })
}
pilotRenewalContract('memory', { async open() { return new MemoryStore() } })

for (const writer of ['thread', 'inline'] as const) {
  issuanceHorizonContract(`sqlite (${writer} writer)`, {
    async open() {
      file = join(dir, `audit-${++n}.db`)
      return new SqliteStore({ file, writer })
    },
    async openPeer() { return new SqliteStore({ file, writer }) },
    // Schema step 10 is the horizon table: back to 9, as the previous version left the file (step 11,
    // the credential confirmation columns, then runs again and finds them).
    async rewind() { raw((db) => db.exec('DROP TABLE issuance_horizon; PRAGMA user_version = 9')) },
    async reopen() { return new SqliteStore({ file, writer }) },
    async appendUncounted(r) {
      raw((db) => {
        db.prepare("INSERT INTO audit_log (seq, time, type, exp, body, prev_hash, hash) VALUES (?, ?, 'token.issued', ?, '{}', 'x', 'y')").run(r.seq, r.time, r.exp)
        db.prepare('UPDATE audit_head SET seq = ? WHERE id = 1').run(r.seq)
      })
    },
    async forgetHorizons() { raw((db) => db.exec('DELETE FROM issuance_horizon')) },
    async cutBack(seq) {
      raw((db) => {
        db.prepare('DELETE FROM audit_log WHERE seq > ?').run(seq)
        db.prepare('UPDATE audit_head SET seq = ? WHERE id = 1').run(seq)
      })
    },
  })
}
issuanceHorizonContract('memory', { async open() { return new MemoryStore() } })
