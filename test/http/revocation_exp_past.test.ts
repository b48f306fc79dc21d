// A jti revocation's exp is the token's: one already past named a token that had expired, yet POST /v1/revocations
// stored an entry whose `until` had already gone by, so it was answered 201, listed nowhere and matched nothing.
// Refused as invalid_request, like the CLI; an exp within 60 s (the clock skew allowed between the broker and the
// daemons that accept its tokens, as elsewhere in the broker) is still taken, and held until that allowance passes.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { TEST_NOW, testDeps } from '../support/broker_deps.ts'

const ADMIN = 'a'.repeat(43)

function setup() {
  const store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }), knownIssuers: () => new Set(),
  })
  const app = createApp(testDeps({ admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(ADMIN).digest())] } }))
  const post = (body: unknown) => app.request('/v1/revocations', {
    method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  })
  const list = async () => (await (await app.request('/v1/revocations?all=true', { headers: { authorization: `Bearer ${ADMIN}` } })).json() as { revocations: unknown[] }).revocations
  return { store, post, list }
}

describe('POST /v1/revocations with an exp already past', () => {
  it.each([
    [0], [TEST_NOW - 3600], [TEST_NOW - 61],
  ])('refuses exp %d with invalid_request and stores nothing', async (exp) => {
    const { post, list } = setup()
    const res = await post({ jti: 'j-1', exp })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      error: 'invalid_request',
      error_description: `exp ${exp} is more than 60 s in the past (the clock skew allowed): the token has already expired, so the entry would revoke nothing`,
    })
    expect(await list()).toEqual([])
  })

  it('refuses it in a dry run too', async () => {
    const { post } = setup()
    const res = await post({ jti: 'j-1', exp: 0, dry_run: true })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/^exp 0 is more than 60 s in the past/) })
  })

  // The token is still valid: the exp sent is wrong (an iat copied for it, a stale note), not the revocation.
  // Refusing it said "the token has already expired", telling an operator cutting off a stolen token that there
  // was nothing to cut off. Fail closed: the entry is stored and held until the exp recorded, which the answer shows.
  it('takes it, held until the recorded exp, when the audit log recorded a later exp the token still lives to', async () => {
    const { store, post, list } = setup()
    await store.record({ type: 'token.issued', time: TEST_NOW - 10, role: 'pilot', jti: 'j-1', exp: TEST_NOW + 600, decision: 'allow', tokenKind: 'idtoken' })
    const res = await post({ jti: 'j-1', exp: 0 })
    expect(res.status).toBe(201)
    expect(await res.json()).toMatchObject({ revocation: { kind: 'jti', value: 'j-1', until: TEST_NOW + 600 } })
    expect(await list()).toHaveLength(1)
  })

  it('refuses it when the exp the audit log recorded is more than 60 s past as well', async () => {
    const { store, post, list } = setup()
    await store.record({ type: 'token.issued', time: TEST_NOW - 7200, role: 'pilot', jti: 'j-1', exp: TEST_NOW - 3600, decision: 'allow', tokenKind: 'idtoken' })
    expect((await post({ jti: 'j-1', exp: TEST_NOW - 4000 })).status).toBe(400)
    expect(await list()).toEqual([])
  })

  // An enrolment credential covers only the queue wait, but its entry also stops the renewals of the pilots it
  // yielded (docs/pilots.md), so it is held until every token issued so far has expired, whatever its exp. Its
  // exp past (as the manifest states it) was refused as "the entry would revoke nothing": the pilots went on.
  it('takes it for a pilot enrolment credential, whose entry stops its pilots\' renewals, and holds it for the longest lifetime', async () => {
    const { store, post } = setup()
    await store.record({ type: 'token.issued', time: TEST_NOW - 7200, role: 'pilot', jti: 'e'.repeat(32), exp: TEST_NOW - 3600, decision: 'allow', tokenKind: 'pilot_enrolment' })
    const res = await post({ jti: 'e'.repeat(32), exp: TEST_NOW - 3600 })
    expect(res.status).toBe(201)
    expect(await res.json()).toMatchObject({ revocation: { kind: 'jti', value: 'e'.repeat(32), until: TEST_NOW + 86400 } })
  })

  it('takes an exp within the 60 s allowance and holds the entry until the allowance has passed', async () => {
    const { post } = setup()
    const res = await post({ jti: 'j-1', exp: TEST_NOW - 5 })
    expect(res.status).toBe(201)
    // exp + 60: a daemon whose clock is up to 60 s behind the broker's still takes the token until then.
    expect(await res.json()).toMatchObject({ revocation: { kind: 'jti', value: 'j-1', until: TEST_NOW + 55 } })
  })
})
