// A stored body edited into something that is not JSON (by whoever can write the SQLite file or the PostgreSQL
// table) made every page that met it answer 500 (a SyntaxError parsing the row): the admin API's search and
// summary, the console's search, record and overview pages. The house rule is never a 500: the row shows at its
// seq as an unreadable record that does not verify, and the rest of the page as before. (Each store reads such
// a row the same way: test/integration/audit_log.contract.ts.)
import { beforeEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { createApp } from '../../src/app.ts'
import { AuditPage } from '../../src/http/openapi/response_schemas.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { consoleAdminApp, startdIssuance } from '../support/console_admin_app.ts'
import { cookieOf, signInWithToken } from '../support/console_sign_in.ts'

const ORIGIN = 'https://broker.example.org'
const BOOT = 'd'.repeat(43)
const IAM = 'https://iam.example.org/'
// The console and the admin API read the system clock: the records are made now, so the overview's last 24 hours hold them.
const NOW = Math.floor(Date.now() / 1000)
const BROKEN = '{"audience":[],"caller":{"client_id":"ctb-cloud-a-prov'

const ISSUED = startdIssuance(NOW - 60)
const DENIED: AuditEvent = { type: 'token.denied', time: NOW - 30, caller: { iss: IAM, sub: 'mallory' }, role: 'startd', decision: 'deny', reason: 'unauthorized_client: no rule' }

let store: MemoryStore
let app: ReturnType<typeof createApp>

beforeEach(async () => {
  store = new MemoryStore()
  app = consoleAdminApp(store, BOOT, NOW)
  await store.record(ISSUED)
  await store.record({ ...ISSUED, jti: 'b'.repeat(32), time: NOW - 50 })
  await store.record(DENIED)
  await store.record({ ...DENIED, time: NOW - 20 })
  // Records 2 (an issuance) and 4 (a denial) edited by hand into text that is not JSON.
  store.rawRows()[1]!.body = BROKEN
  store.rawRows()[3]!.body = 'garbage'
})

const admin = (path: string) => app.request(path, { headers: { authorization: `Bearer ${BOOT}` } })

async function consolePage(path: string): Promise<Response> {
  const res = await signInWithToken(app, BOOT, ORIGIN)
  return app.request(path, { headers: { cookie: `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}` } })
}

describe('an audit body that is not JSON', () => {
  it('GET /v1/audit answers the page, with that record unreadable at its seq and the body as stored', async () => {
    const res = await admin('/v1/audit?role=startd')
    expect(res.status).toBe(200)
    const page = await res.json() as { records: Array<Record<string, unknown>> }
    expect(AuditPage.safeParse(page).success).toBe(true)
    expect(page.records.map((r) => [r.seq, r.unreadable ?? (r.event as AuditEvent).type])).toEqual([
      [4, { reason: 'body is not valid JSON', body: 'garbage' }],
      [3, 'token.denied'],
      [2, { reason: 'body is not valid JSON', body: BROKEN }],
      [1, 'token.issued'],
    ])
    expect(page.records[2]).not.toHaveProperty('event')
  })

  it('GET /v1/audit/summary counts the unreadable denial apart', async () => {
    const res = await admin(`/v1/audit/summary?from=${NOW - 3600}&to=${NOW}`)
    expect(res.status).toBe(200)
    expect((await res.json() as { denialsByReason: unknown[] }).denialsByReason).toEqual([
      { reason: '(unreadable record: body edited or corrupted)', count: 1 },
      { reason: 'unauthorized_client: no rule', count: 1 },
    ])
  })

  it('the console search lists it at its seq as unreadable, and the other records as before', async () => {
    const res = await consolePage('/console/search?role=startd')
    expect(res.status).toBe(200)
    const body = await res.text()
    expect(body).toContain('4 records')
    expect(body).toMatch(/<a href="\/console\/records\/2">2<\/a>.*?UNREADABLE<\/span>: body is not valid JSON/s)
    expect(body).toContain('fa60db71b73be01eaf46681bd3668d1b')
  })

  it('the console record page shows it as not verifying, with the body as stored', async () => {
    const res = await consolePage('/console/records/2')
    expect(res.status).toBe(200)
    const body = await res.text()
    expect(/<dd id="record-verifies">(.*?)<\/dd>/s.exec(body)?.[1]).toContain('NO')
    expect(/<p id="record-unreadable">(.*?)<\/p>/s.exec(body)?.[1]).toContain('body is not valid JSON')
    expect(/<pre id="record-body">(.*?)<\/pre>/s.exec(body)?.[1]).toBe(BROKEN.replaceAll('"', '&quot;'))
    // Its neighbours still verify.
    expect(/<dd id="record-verifies">(.*?)<\/dd>/s.exec(await (await consolePage('/console/records/3')).text())?.[1]).toContain('yes')
  })

  it('the console overview and pilots pages answer', async () => {
    const overview = await consolePage('/console')
    expect(overview.status).toBe(200)
    expect(await overview.text()).toContain('(unreadable record: body edited or corrupted)')
    expect((await consolePage('/console/pilots')).status).toBe(200)
  })
})
