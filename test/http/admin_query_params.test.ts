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

function app() {
  const store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }), knownIssuers: () => new Set(),
  })
  return createApp(testDeps({ admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(ADMIN).digest())] } }))
}

/** The admin query and path parameters are checked by the zod schemas the OpenAPI document shows. */
describe('admin query and path parameters', () => {
  it.each([
    ['GET', '/v1/pilots?site=no%20spaces', 400, 'invalid_request', 'site must be a site label'],
    ['GET', '/v1/revocations?all=maybe', 400, 'invalid_request', 'all must be true or false'],
    ['GET', '/v1/revocations/condor?format=xml', 400, 'invalid_request', 'format must be config or json'],
    ['DELETE', '/v1/revocations/0', 404, 'invalid_request', expect.stringMatching(/^no such revocation/)],
    // A repeated parameter is ambiguous (which value filters?): refused, not silently one of them.
    ['GET', '/v1/audit?limit=1&limit=2', 400, 'invalid_request', 'parameter limit must not be repeated'],
    ['GET', '/v1/audit?type=token.issued&type=token.denied', 400, 'invalid_request', 'parameter type must not be repeated'],
    ['GET', '/v1/audit/summary?bucket=hour&bucket=day', 400, 'invalid_request', 'parameter bucket must not be repeated'],
    ['GET', '/v1/pilots?site=hpc-b&site=cloud-a', 400, 'invalid_request', 'parameter site must not be repeated'],
    ['GET', '/v1/revocations?all=false&all=true', 400, 'invalid_request', 'parameter all must not be repeated'],
    ['GET', '/v1/revocations/condor?format=config&format=json', 400, 'invalid_request', 'parameter format must not be repeated'],
  ])('%s %s is %i %s', async (method, path, status, error, description) => {
    const res = await app().request(path, { method, headers: { authorization: `Bearer ${ADMIN}` } })
    expect(res.status).toBe(status)
    expect(await res.json()).toEqual({ error, error_description: description })
  })

  // A token pasted where a parameter's name goes, twice (a misbuilt URL): the refusal named the repeated name
  // whole, so the token went back into the client's logs and a proxy's. It is named as an unknown one is.
  it('does not repeat a token given as a repeated parameter name', async () => {
    // What `openssl rand -hex 32` prints, and a JWT-like mixed-case run: both token-shaped (docs/logging.md).
    for (const token of ['9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', 'eyJhbGciOiJFUzI1NiJ9x7QpLmN0aW9uIjoiaGVsbG8ifQ']) {
      const res = await app().request(`/v1/audit?${token}=1&${token}=2`, { headers: { authorization: `Bearer ${ADMIN}` } })
      expect(res.status).toBe(400)
      expect(await res.json()).toEqual({ error: 'invalid_request', error_description: 'parameter [token] must not be repeated' })
    }
  })

  it.each([
    ['/v1/pilots?site=hpc-b', 'application/json'],
    ['/v1/pilots?other=ignored', 'application/json'],
    ['/v1/revocations?all=true', 'application/json'],
    ['/v1/revocations/condor', 'text/plain'],
    ['/v1/revocations/condor?format=json', 'application/json'],
  ])('GET %s is accepted', async (path, type) => {
    const res = await app().request(path, { headers: { authorization: `Bearer ${ADMIN}` } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(new RegExp(`^${type}`))
  })
})
