// The console's record page judges a record by what is stored, not only by its re-encoded body: the indexed
// columns (caller_sub, role, type, …) are what the console's search and `audit list` select by, so one edited
// by hand beside an untouched body must read as a record that does not verify, naming the column, as
// `audit verify` names it (docs/audit.md: "column X differs from the hashed body (record edited)").
import { beforeEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { consoleAdminApp, consoleRecordPage, recordVerifies, startdIssuance } from '../support/console_admin_app.ts'

const ORIGIN = 'https://broker.example.org'
const BOOT = 'c'.repeat(43)
const NOW = 1795557188

const ISSUED = startdIssuance(NOW)

let store: MemoryStore
let app: ReturnType<typeof createApp>

beforeEach(async () => {
  store = new MemoryStore()
  app = consoleAdminApp(store, BOOT, NOW)
  await store.record(ISSUED)
  await store.record({ ...ISSUED, jti: 'b'.repeat(32), time: NOW + 1 })
})

const recordPage = (seq: number) => consoleRecordPage(app, BOOT, ORIGIN, seq)
const verifies = recordVerifies

describe('console record page: indexed columns', () => {
  it('a record whose body, hash and columns agree verifies', async () => {
    const body = await recordPage(1)
    expect(verifies(body)).toContain('yes')
    expect(body).not.toContain('differs from the hashed body')
  })

  it.each([
    ['caller_sub', 'someone-else'],
    ['issued_sub', 'startd-cloud-b-ep-1@eps.pool.example.org'],
    ['role', 'schedd'],
    ['type', 'token.denied'],
    ['jti', 'c'.repeat(32)],
    ['decision', 'deny'],
    ['site', 'cloud-b'],
    ['token_kind', 'scitoken'],
    ['time', NOW - 7 * 86400],
  ] as const)('a %s column edited beside an untouched body does not verify, and the page names it', async (column, value) => {
    const row = store.rawRows()[0]!
    ;(row as unknown as Record<string, unknown>)[column] = value
    const body = await recordPage(1)
    expect(verifies(body)).toContain('NO')
    expect(body).toContain(`column ${column} differs from the hashed body`)
    // The body is untouched: its hash still matches (the fault is the column, not the content).
    expect(/<dt>hash matches content<\/dt><dd>(.*?)<\/dd>/s.exec(body)?.[1]).toContain('yes')
  })

  it('names every edited column, not only the first', async () => {
    const row = store.rawRows()[0]!
    row.caller_sub = 'someone-else'
    row.site = 'cloud-b'
    const body = await recordPage(1)
    expect(body).toContain('column caller_sub differs from the hashed body')
    expect(body).toContain('column site differs from the hashed body')
  })

  it('an edit of the next record\'s column does not make this one fail', async () => {
    store.rawRows()[1]!.role = 'schedd'
    expect(verifies(await recordPage(1))).toContain('yes')
    expect(verifies(await recordPage(2))).toContain('NO')
  })
})
