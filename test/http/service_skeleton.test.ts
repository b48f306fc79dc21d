import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { testDeps } from '../support/broker_deps.ts'

describe('service skeleton', () => {
  it('GET /healthz answers ok', async () => {
    const res = await createApp(testDeps()).request('/healthz')
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ status: 'ok' })
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('GET /readyz is 503 when a dependency is down, naming it', async () => {
    const res = await createApp(testDeps({ readiness: async () => ({ keys: 'ok', audit: 'database is locked' }) })).request('/readyz')
    expect(res.status).toBe(503)
    expect(await res.json()).toEqual({ status: 'not_ready', checks: { keys: 'ok', audit: 'database is locked' } })
  })

  it('serves discovery with issuer, jwks_uri and token_endpoint for scitokens-cpp', async () => {
    const app = createApp(testDeps())
    for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
      const res = await app.request(path)
      expect(res.status).toBe(200)
      const doc = await res.json() as Record<string, unknown>
      expect(doc).toMatchObject({
        issuer: 'https://broker.example.org',
        jwks_uri: 'https://broker.example.org/jwks',
        token_endpoint: 'https://broker.example.org/token',
        grant_types_supported: ['urn:ietf:params:oauth:grant-type:token-exchange'],
      })
      expect(doc.issued_token_types_supported).toContain('urn:htcondor:token-type:idtoken')
    }
  })

  it('GET /jwks publishes only public members, with kid and alg', async () => {
    const deps = testDeps()
    const res = await createApp(deps).request('/jwks')
    const { keys } = await res.json() as { keys: Record<string, string>[] }
    // The signing key and the next one, published ahead of the rotation that makes it sign.
    expect(keys).toHaveLength(2)
    expect(keys.map((k) => k.kid)).toContain(deps.keys.scitoken.kid)
    for (const k of keys) expect(k).toEqual({ kty: 'EC', crv: 'P-256', x: expect.any(String), y: expect.any(String), kid: expect.any(String), alg: 'ES256', use: 'sig' })
  })

  it('returns OAuth-shaped 404 JSON for unknown paths, never HTML', async () => {
    const res = await createApp(testDeps()).request('/nope')
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toMatch(/application\/json/)
  })

  it('hides internal errors behind server_error with no-store', async () => {
    const app = createApp(testDeps({ readiness: async () => { throw new Error('secret detail /var/lib/x') } }))
    const res = await app.request('/readyz')
    expect(res.status).toBe(500)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.json()).toEqual({ error: 'server_error' })
  })
})
