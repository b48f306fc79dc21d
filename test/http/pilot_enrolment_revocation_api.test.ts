// POST /v1/revocations takes a pilot enrolment as one more selector (docs/pilots.md): stored, pushed to HTCondor as
// `ctb_enrolment =?= "JTI"`, and refused as invalid_request when the value is not a jti.
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
const ENROLMENT = '0123456789abcdef0123456789abcdef'

function app() {
  const store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }), knownIssuers: () => new Set(),
  })
  return createApp(testDeps({ admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(ADMIN).digest())] } }))
}

const post = (a: ReturnType<typeof app>, body: unknown) => a.request('/v1/revocations', {
  method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
})

describe('POST /v1/revocations with pilot-enrolment', () => {
  it('revokes the enrolment and renders its clause', async () => {
    const a = app()
    const res = await post(a, { 'pilot-enrolment': ENROLMENT, reason: 'teardown of hybrid' })
    expect(res.status, await res.clone().text()).toBe(201)
    expect(await res.json()).toMatchObject({ revocation: { kind: 'pilot-enrolment', value: ENROLMENT } })
    const expr = await a.request('/v1/revocations/condor?format=json', { headers: { authorization: `Bearer ${ADMIN}` } })
    expect((await expr.json() as { expr: string }).expr).toBe(`ctb_enrolment =?= "${ENROLMENT}"`)
  })

  it('refuses a value that is not a jti, and two selectors at once', async () => {
    const a = app()
    const bad = await post(a, { 'pilot-enrolment': 'hpc-b:42' })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/^pilot-enrolment must be an enrolment credential's jti/) })
    const two = await post(a, { 'pilot-enrolment': ENROLMENT, 'pilot-job': 'hpc-b:42' })
    expect(two.status).toBe(400)
    expect(await two.json()).toMatchObject({ error: 'invalid_request' })
  })
})
