import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { columnsOf, encodeEventBody } from '../../src/audit/chain.ts'
import { eventRow } from '../../src/storage/appended_rows.ts'

// record() queues JSON.stringify(event) and the backend canonicalises it inside the commit (SQLite: in its
// writer thread). Existing chains verify only if that gives the very bytes encodeEventBody(event) gives.
describe('eventRow (canonical body derived from the queued JSON)', () => {
  const issued: AuditEvent = {
    type: 'token.issued', time: 1_795_555_000, requestId: 'r-1',
    caller: { iss: 'https://iam.example.org/', sub: 'abc', client_id: 'factory', groups: ['/cms', '/cms/pilots'] },
    clientAddress: '127.0.0.1', role: 'startd', tokenKind: 'idtoken', issuedSub: 'startd@ep-1.example.org',
    jti: '0123456789abcdef0123456789abcdef', scopes: ['condor:/READ', 'condor:/ADVERTISE_STARTD'], audience: [],
    exp: 1_795_641_400, tokenSha256: 'f'.repeat(64), policyRule: 'cloud-a-startd', decision: 'allow',
    detail: { gen: 3, host: 'ep-1.example.org', note: 'é "quoted" \\ \n\u2028', nested: { z: 1, a: [null, -0, 1.5, false] } },
  }
  const denied: AuditEvent = { type: 'token.denied', time: 1, decision: 'deny', reason: 'access_denied: no rule', site: undefined, detail: { b: undefined, a: 1 } }

  it.each([['issued', issued], ['denied with undefined members', denied]])('%s: same body and columns as encoding the event itself', (_, e) => {
    const row = eventRow(JSON.stringify(e))
    expect(row.body).toBe(encodeEventBody(e))
    expect(row.cols).toEqual(columnsOf(e))
  })

  it('sorts keys at every level', () => {
    expect(eventRow(JSON.stringify(denied)).body).toBe('{"decision":"deny","detail":{"a":1},"reason":"access_denied: no rule","time":1,"type":"token.denied"}')
  })
})
