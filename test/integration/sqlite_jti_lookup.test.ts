// Lookups by jti on the SQLite store go through the time index for jtis that tell their record's second
// (lib/jti.ts), and through an in-memory index built from the log for the others (jti_index.ts), not an SQL
// index of their own: they must see rows written by other connections, survive reopening, and upgrade old files.
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { newJti } from '../../src/lib/jti.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'

const T0 = 1_800_000_000
const issued = (i: number, jti = `jti-${i}`): AuditEvent => ({
  type: 'token.issued', time: T0 + i, requestId: `r-${i}`, caller: { sub: 'provisioner' }, role: 'startd',
  tokenKind: 'idtoken', issuedSub: `startd-${i}@pool.example.org`, jti, decision: 'allow',
})
const jtisOf = async (s: SqliteStore, jti: string, extra: Partial<Parameters<SqliteStore['query']>[0]> = {}) =>
  (await s.query({ limit: 100, jti, ...extra })).records.map((r) => r.seq)

describe('SQLite lookups by jti', () => {
  it('finds records written by this store, by another connection meanwhile, and after reopening', async () => {
    const file = join(tempDir(), 'a.db')
    const a = new SqliteStore({ file })
    await Promise.all(Array.from({ length: 30 }, (_, i) => a.record(issued(i + 1))))
    expect(await jtisOf(a, 'jti-17')).toHaveLength(1)
    // Another process (here: another store on the same file, as the CLI would be) appends after that lookup.
    const b = new SqliteStore({ file, writer: 'inline' })
    await b.record(issued(31, 'jti-17'))
    await b.record(issued(32))
    await b.close()
    expect(await jtisOf(a, 'jti-17')).toHaveLength(2)
    expect(await jtisOf(a, 'jti-32')).toEqual([32])
    expect(await jtisOf(a, 'jti-999')).toEqual([])
    // Other filters still apply to the candidates.
    expect(await jtisOf(a, 'jti-17', { to: T0 + 20 })).toHaveLength(1)
    await a.close()
    const c = new SqliteStore({ file, writer: 'inline' })
    expect(await jtisOf(c, 'jti-17')).toHaveLength(2)
    await c.close()
  })

  it('sees a record the moment its record() resolved, even while an older catch-up pass is running', async () => {
    // Inline writer: commits run at the next event-loop turn, so the interleaving below is deterministic.
    const file = join(tempDir(), 'a.db')
    const s = new SqliteStore({ file, writer: 'inline' })
    await Promise.all(Array.from({ length: 12_000 }, (_, i) => s.record(issued(i + 1))))
    const slow = jtisOf(s, 'jti-1') // starts a pass up to seq 12,000 that yields between 5,000-row steps
    await s.record(issued(20_000)) // commits as seq 12,001 while that pass is still running
    const [fresh, old] = await Promise.all([jtisOf(s, 'jti-20000'), slow])
    expect(fresh).toEqual([12_001])
    expect(old).toEqual([1])
    await s.close()
  })

  it('indexes its own writer\'s rows as they commit, so a busy broker has no tail to read back', async () => {
    const file = join(tempDir(), 'a.db')
    for (const writer of ['thread', 'inline'] as const) {
      const s = new SqliteStore({ file, writer })
      const before = (await s.query({ limit: 1 })).records[0]?.seq ?? 0
      await Promise.all(Array.from({ length: 3000 }, (_, i) => s.record(issued(before + i + 1))))
      // No lookup has run: the rows came from the commits themselves.
      expect(s.jtiIndexState().through).toBe(before + 3000)
      expect(await jtisOf(s, `jti-${before + 2999}`)).toEqual([before + 2999])
      await s.close()
    }
  })

  it('lets go of pruned records\' entries when the index grows', async () => {
    const s = new SqliteStore({ file: join(tempDir(), 'a.db') })
    await Promise.all(Array.from({ length: 9000 }, (_, i) => s.record(issued(i + 1))))
    expect(await s.prune(T0 + 8001, T0 + 9001)).toMatchObject({ pruned: 8000 })
    await Promise.all(Array.from({ length: 9000 }, (_, i) => s.record(issued(20_000 + i))))
    // 18,000 jtis went in; the table grew past 16,384 entries after the prune and kept only live ones.
    expect(s.jtiIndexState().entries).toBeLessThan(11_000)
    expect(await jtisOf(s, 'jti-8500')).toHaveLength(1)
    expect(await jtisOf(s, 'jti-28999')).toHaveLength(1)
    expect(await jtisOf(s, 'jti-17')).toEqual([])
    await s.close()
  })

  it('finds a token by a jti made in its record\'s second with no in-memory entry, and keeps entries for the rest', async () => {
    const file = join(tempDir(), 'a.db')
    const random = { thread: '0123456789abcdef0123456789abcdef', inline: 'fedcba9876543210fedcba9876543210' }
    for (const writer of ['thread', 'inline'] as const) {
      const s = new SqliteStore({ file, writer })
      const base = (await s.query({ limit: 1 })).records[0]?.seq ?? 0
      await jtisOf(s, newJti(T0 - 1)) // the index has read the log written so far
      const entries = s.jtiIndexState().entries
      const own = Array.from({ length: 200 }, (_, i) => newJti(T0 + i))
      await Promise.all(own.map((jti, i) => s.record(issued(i, jti))))
      // Made in the second before its record (an issuance across a second's end), and a random id as
      // the broker made them before: both need an entry.
      const straddling = newJti(T0 + 499)
      await s.record(issued(500, straddling))
      await s.record(issued(501, random[writer]))
      expect(s.jtiIndexState().entries - entries).toBe(2)
      expect(await jtisOf(s, own[150]!)).toEqual([base + 151])
      expect(await jtisOf(s, straddling)).toEqual([base + 201])
      expect(await jtisOf(s, random[writer])).toEqual([base + 202])
      // A later record naming the same token (here: a second issuance record a day on) is found beside it.
      await s.record(issued(86_400, own[7]!))
      expect(s.jtiIndexState().entries - entries).toBe(3)
      expect(await jtisOf(s, own[7]!)).toEqual([base + 203, base + 8])
      expect(await jtisOf(s, own[7]!, { to: T0 + 100 })).toEqual([base + 8])
      expect(await jtisOf(s, newJti(T0 + 7))).toEqual([])
      await s.close()
    }
    // Read back from the log on opening: the same entries, the same answers.
    const again = new SqliteStore({ file, writer: 'inline' })
    expect(await jtisOf(again, random.thread)).toEqual([202])
    expect(await jtisOf(again, random.inline)).toEqual([405])
    expect(again.jtiIndexState().entries).toBe(6)
    await again.close()
  })

  it('drops the old SQL jti index when it opens a file of schema version 1', async () => {
    const file = join(tempDir(), 'a.db')
    const s = new SqliteStore({ file, writer: 'inline' })
    await s.record(issued(1))
    await s.close()
    // Put the file back to what version 1 of the broker wrote.
    const raw = new DatabaseSync(file)
    raw.exec(`CREATE INDEX audit_jti ON audit_log(jti); DROP INDEX audit_revocation_records; DROP TABLE audit_anchor;
      ALTER TABLE revocations DROP COLUMN iss; ALTER TABLE revocations DROP COLUMN lifted_at; ALTER TABLE revocations DROP COLUMN lifted_by;
      PRAGMA user_version = 1`)
    raw.close()
    const reopened = new SqliteStore({ file, writer: 'inline' })
    expect(await jtisOf(reopened, 'jti-1')).toEqual([1])
    await reopened.close()
    const check = new DatabaseSync(file)
    expect(check.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'audit_jti'").get()).toEqual({ n: 0 })
    expect(check.prepare('PRAGMA user_version').get()).toEqual({ user_version: 16 })
    check.close()
  })
})
