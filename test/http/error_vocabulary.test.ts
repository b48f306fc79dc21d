import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { TEST_NOW, testDeps } from '../support/broker_deps.ts'
import { useTokenApp } from '../conformance/support/token_app.ts'

/** RFC 6749 §5.2 error_description: %x20-21 / %x23-5B / %x5D-7E. */
const DESCRIPTION = /^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/
const ADMIN = 'a'.repeat(43)
const t = await useTokenApp()

function adminApp() {
  const store = new MemoryStore()
  const revocations = new RevocationService({ store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60, knownLabels: () => ({ roles: new Set<string>(), sites: new Set<string>() }) })
  const authenticators = [bootstrapTokenAuthenticator(createHash('sha256').update(ADMIN).digest())]
  return createApp(testDeps({ admin: { audit: store, revocations, authenticators } }))
}

async function errorBody(res: Response, status: number): Promise<{ error: string; error_description: string }> {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toMatch(/^application\/json\b/)
  expect(res.headers.get('cache-control')).toBe('no-store')
  const body = await res.json() as { error: string; error_description: string }
  expect(body.error_description).toMatch(DESCRIPTION)
  return body
}

describe('every error answer speaks the one error vocabulary', () => {
  it.each(['/nope', '/token/extra', '/v1/nothing-here'])('answers an unknown path %s with 404 invalid_request JSON', async (path) => {
    const body = await errorBody(await adminApp().request(path), 404)
    expect(body.error).toBe('invalid_request')
  })

  it('answers an admin request without credentials with a bare Bearer challenge (RFC 6750 §3)', async () => {
    for (const authorization of [undefined, 'Basic YWRtaW46YWRtaW4=']) {
      const res = await adminApp().request('/v1/audit', authorization ? { headers: { authorization } } : {})
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="condor-token-broker admin"')
      expect((await errorBody(res, 401)).error).toBe('invalid_token')
    }
  })

  it.each([
    ['a malformed Bearer header', 'Bearer two tokens'],
    ['an empty Bearer header', 'Bearer '],
  ])('answers %s with 400 invalid_request in the challenge and the body (RFC 6750 §3.1)', async (_name, authorization) => {
    const res = await adminApp().request('/v1/audit', { headers: { authorization } })
    const body = await errorBody(res, 400)
    expect(body.error).toBe('invalid_request')
    const challenge = res.headers.get('www-authenticate')!
    expect(challenge).toMatch(/^Bearer realm="condor-token-broker admin", error="invalid_request", error_description="[\x20-\x21\x23-\x5b\x5d-\x7e]+"$/)
    expect(challenge).toContain(`error_description="${body.error_description}"`)
  })

  it.each([
    ['an unknown token', `Bearer ${'b'.repeat(43)}`],
    ['an unknown token after a lowercase scheme', `bearer ${'b'.repeat(43)}`],
  ])('answers %s with invalid_token in the challenge and the body', async (_name, authorization) => {
    const res = await adminApp().request('/v1/audit', { headers: { authorization } })
    const body = await errorBody(res, 401)
    expect(body.error).toBe('invalid_token')
    const challenge = res.headers.get('www-authenticate')!
    expect(challenge).toMatch(/^Bearer realm="condor-token-broker admin", error="invalid_token", error_description="[\x20-\x21\x23-\x5b\x5d-\x7e]+"$/)
    expect(challenge).toContain(`error_description="${body.error_description}"`)
  })

  it('still admits the admin token', async () => {
    expect((await adminApp().request('/v1/audit', { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(200)
  })
})

describe('request ids', () => {
  it('never takes the caller\'s X-Request-Id as the audit request id', async () => {
    const ids: string[] = []
    for (let i = 0; i < 2; i++) {
      const res = await t.post(t.form(await t.userToken()), { 'x-request-id': 'same-id-from-two-callers' })
      expect(res.status).toBe(200)
      const rec = (await t.store.query({ limit: 1 })).records[0]!
      expect(rec.event.requestId).toBe(res.headers.get('x-request-id'))
      ids.push(rec.event.requestId!)
    }
    expect(new Set(ids).size).toBe(2)
    expect(ids).not.toContain('same-id-from-two-callers')
  })
})
