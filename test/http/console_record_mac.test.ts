// The console's record page is the local part of `audit verify`, and `audit verify` judges MACs
// (docs/audit.md, "Record MACs"): a record an insider appended with SQL, hash and columns right but no
// MAC the broker made, must not read "verifies: yes" there.
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { beforeEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { createApp } from '../../src/app.ts'
import { auditMacKey } from '../../src/audit/record_mac.ts'
import type { StoredRow } from '../../src/audit/chain.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { consoleAdminApp, consoleRecordPage, recordVerifies, startdIssuance } from '../support/console_admin_app.ts'
import { canonicalBody, documentedHash } from '../support/forged_record.ts'

const ORIGIN = 'https://broker.example.org'
const BOOT = 'd'.repeat(43)
const NOW = 1795557188
const RAW = randomBytes(32)

let store: MemoryStore
let app: ReturnType<typeof createApp>

beforeEach(async () => {
  store = new MemoryStore({ auditMac: auditMacKey(RAW) })
  app = consoleAdminApp(store, BOOT, NOW)
  // seq 1 opens MACs (audit.macs_started), 2 and 3 are the broker's issuances.
  await store.record(startdIssuance(NOW))
  await store.record({ ...startdIssuance(NOW + 1), jti: 'b'.repeat(32) })
})

/** The insider's row after the last one: the documented hash, columns agreeing with the body, `mac` as given. */
function appendForged(e: AuditEvent, mac: string | null): void {
  const rows = store.rawRows()
  const last = rows.at(-1)!
  const seq = last.seq + 1
  const body = canonicalBody(e)
  const hash = documentedHash(seq, last.hash, body)
  const row: StoredRow = {
    seq, body, prev_hash: last.hash, hash, mac,
    time: e.time, type: e.type, request_id: null, caller_iss: e.caller?.iss ?? null, caller_sub: e.caller?.sub ?? null, client_id: e.caller?.client_id ?? null,
    role: e.role ?? null, token_kind: e.tokenKind ?? null, issued_sub: e.issuedSub ?? null, jti: e.jti ?? null, decision: e.decision ?? null, exp: e.exp ?? null, site: e.site ?? null,
  }
  rows.push(row)
}

const recordPage = (seq: number) => consoleRecordPage(app, BOOT, ORIGIN, seq)
const verifies = recordVerifies
const macLine = (body: string) => /<dd id="record-mac">(.*?)<\/dd>/s.exec(body)?.[1]

describe('console record page: MACs', () => {
  it('a record the broker wrote verifies, its MAC named by key', async () => {
    const body = await recordPage(3)
    expect(verifies(body)).toContain('yes')
    // The key id as docs/audit.md defines it: SHA-256("condor-token-broker audit MAC key id\n" || key), 16 hex digits.
    const kid = createHash('sha256').update(Buffer.concat([Buffer.from('condor-token-broker audit MAC key id\n'), RAW])).digest('hex').slice(0, 16)
    expect(macLine(body)).toContain(kid)
  })

  it('a record appended without a MAC after the broker\'s does not verify', async () => {
    appendForged({ ...startdIssuance(NOW + 2), jti: 'e'.repeat(32) }, null)
    const body = await recordPage(4)
    expect(verifies(body)).toContain('NO')
    expect(macLine(body)).toContain('no MAC')
  })

  it('a record carrying a MAC over another record\'s hash does not verify', async () => {
    const [, , three] = store.rawRows()
    appendForged({ ...startdIssuance(NOW + 2), jti: 'e'.repeat(32) }, three!.mac!)
    expect(verifies(await recordPage(4))).toContain('NO')
    // A MAC made with another key, over the right hash, names that key.
    store.rawRows().pop()
    const other = randomBytes(32)
    const otherKid = createHash('sha256').update(Buffer.concat([Buffer.from('condor-token-broker audit MAC key id\n'), other])).digest('hex').slice(0, 16)
    appendForged({ ...startdIssuance(NOW + 2), jti: 'e'.repeat(32) }, 'placeholder')
    const forged = store.rawRows().at(-1)!
    forged.mac = `${otherKid}:${createHmac('sha256', other).update(Buffer.from(forged.hash, 'hex')).digest('hex')}`
    const body = await recordPage(4)
    expect(verifies(body)).toContain('NO')
    expect(macLine(body)).toContain(`MAC names key ${otherKid}`)
  })
})
