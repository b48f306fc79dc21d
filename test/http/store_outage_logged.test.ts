import { expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { oauthErrorReply } from '../../src/http/oauth_error_response.ts'
import { unrecordableRefusal } from '../../src/issuance/unrecordable_refusal.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'
import { recordingLogger } from '../support/loopback_failures.ts'

// docs/errors.md: an audit store outage is answered 503 temporarily_unavailable, whose description names
// nothing of the store; "which store and what it said are in the log". So on a route other than POST
// /token (whose refusal path logs it with the caller), the store's own error still reaches the log, once,
// with the request id, while the client sees only the generic description.

const log = recordingLogger()
const t = await useCredentialsApp({ log })

it('logs the store error behind a job-token 503 with the request id, and keeps it off the wire', async () => {
  const reg = await t.register(await t.userToken({ preferred_username: 'ines' }), { provider: 'cms' })
  expect(reg.status).toBe(201)
  const record = t.store.record.bind(t.store)
  t.store.record = async () => { throw new AuditStoreUnavailable(Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 })) }
  log.lines.length = 0
  try {
    const res = await t.jobToken('ines', 'cms', t.creddToken())
    expect(res.status).toBe(503)
    expect(await res.text()).not.toContain('database is locked')
  } finally {
    t.store.record = record
  }
  const told = log.lines.filter((l) => JSON.stringify(l.fields, (_k, v: unknown) => (v instanceof Error ? { message: v.message, cause: v.cause } : v)).includes('database is locked'))
  expect(told).toHaveLength(1)
  expect(told[0]!.level).toBe('error')
  expect(told[0]!.fields.requestId).toEqual(expect.any(String))
})

it('a POST /token refusal already logged with its caller is not logged again by the error reply', () => {
  const own = recordingLogger()
  const err = new AuditStoreUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))
  expect(unrecordableRefusal(err, { requestId: 'r-1' }, own, { iss: 'https://iam.example.org/', sub: 'alice' })).toBe(true)
  expect(oauthErrorReply(err, own, 'r-1').status).toBe(503)
  expect(own.lines).toHaveLength(1)
  expect(own.lines[0]!.fields).toMatchObject({ requestId: 'r-1', caller: { sub: 'alice' } })
})
