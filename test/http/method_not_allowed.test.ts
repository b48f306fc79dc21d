// RFC 9110 §15.5.6: "The 405 (Method Not Allowed) status code indicates that the method received in the
// request-line is known by the origin server but not supported by the target resource. The origin server
// MUST generate an Allow header field in a 405 response containing a list of the target resource's
// currently supported methods."
// RFC 9110 §9.3.2: a server that answers GET for a resource answers HEAD for it as well, so HEAD is among
// the supported methods wherever GET is.
// Broker decisions (docs/errors.md): every path it serves answers a method it does not support with 405, an
// Allow header and its usual error shape (the OAuth error JSON; the console's HTML page); OPTIONS is one of
// those methods (no CORS here), and an unknown path stays 404 whatever the method.
import { describe, expect, it } from 'vitest'
import { fullApp } from '../support/full_app.ts'

const app = fullApp()

/** The methods tried at every path: the ones the broker could be asked, and one it has never heard of. */
const TRIED = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND'] as const
const OPERATION_KEYS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const

/** A concrete URL for an OpenAPI path template: each `{name}` becomes a plausible value. */
function concrete(template: string): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => ({ id: '1', seq: '1', serial: '01', user: 'alice', provider: 'scitokens' }[name] ?? 'x'))
}

/**
 * The methods a path answers, read from the OpenAPI document alone: its operations, and HEAD beside GET
 * unless its GET mints a token (then the document's x-other-methods names an Allow without HEAD).
 */
function supportedFromDocument(item: Record<string, unknown>): Set<string> {
  const out = new Set(OPERATION_KEYS.filter((k) => item[k] !== undefined).map((k) => k.toUpperCase()))
  if (out.has('GET') && !(item.get as { 'x-get-mints'?: boolean })['x-get-mints']) out.add('HEAD')
  return out
}

const allowSet = (header: string | null) => new Set((header ?? '').split(',').map((m) => m.trim()).filter((m) => m !== ''))

const doc = await (await app.request('/openapi.json')).json() as { paths: Record<string, Record<string, unknown>> }
const paths = Object.keys(doc.paths)
const wrongMethods = paths.flatMap((path) => {
  const supported = supportedFromDocument(doc.paths[path]!)
  return TRIED.filter((m) => !supported.has(m)).map((method) => ({ path, method, supported }))
})

describe('a method a path does not support is 405 with Allow (RFC 9110 §15.5.6)', () => {
  it('enumerates every documented path, console, admin and public alike', () => {
    // Not an empty comparison: the document lists the parts this test is about.
    for (const p of ['/token', '/jwks', '/healthz', '/readyz', '/metrics', '/openapi.json', '/.well-known/openid-configuration', '/v1/audit', '/v1/revocations/{id}', '/v1/revocations/condor', '/v1/pilots', '/v1/ca/crl', '/v1/certificates', '/v1/credentials', '/console', '/console/act/revoke', '/console/records/{seq}']) {
      expect(paths, p).toContain(p)
    }
    expect(wrongMethods.length).toBeGreaterThan(150)
  })

  it.each(wrongMethods.map((w) => [w.method, w.path, w] as const))('%s %s', async (method, path, { supported }) => {
    const res = await app.request(concrete(path), { method })
    expect(res.status).toBe(405)
    expect(allowSet(res.headers.get('allow'))).toEqual(supported)
    expect(res.headers.get('cache-control')).toBe('no-store')
    if (method === 'HEAD') {
      expect(await res.text()).toBe('')
      return
    }
    if (path === '/console' || path.startsWith('/console/')) {
      // The console answers in its own HTML pages, with its headers.
      expect(res.headers.get('content-type')).toMatch(/^text\/html/)
      expect(res.headers.get('content-security-policy')).not.toBeNull()
      expect(await res.text()).toMatch(/Method not allowed/i)
    } else {
      expect(res.headers.get('content-type')).toMatch(/^application\/json/)
      expect(await res.json()).toEqual({ error: 'invalid_request', error_description: expect.stringContaining('only') })
    }
  })
})

describe('what is not a wrong method', () => {
  it.each(['GET', 'PUT', 'DELETE', 'OPTIONS'])('%s at an unknown path is 404', async (method) => {
    for (const url of ['/nope', '/v1/nope', '/jwks/', '/v1/credentials/alice', '/console/nope/deeper']) {
      const res = await app.request(url, { method })
      expect(res.status, `${method} ${url}`).toBe(404)
      expect(res.headers.get('allow'), `${method} ${url}`).toBeNull()
    }
  })

  it.each(['/jwks', '/healthz', '/openapi.json', '/.well-known/openid-configuration'])('HEAD %s answers as GET, without a body', async (url) => {
    const get = await app.request(url)
    const head = await app.request(url, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.status).toBe(get.status)
    expect(head.headers.get('content-type')).toBe(get.headers.get('content-type'))
    expect(await head.text()).toBe('')
  })

  it('HEAD at the job-token read, whose GET mints, is 405 with Allow: GET; the document says so', async () => {
    const item = doc.paths['/v1/credentials/{user}/{provider}/token']!
    expect((item.get as Record<string, unknown>)['x-get-mints']).toBe(true)
    const refusal = (item['x-other-methods'] as { responses: Record<string, { headers: Record<string, { schema: { const: string } }> }> }).responses['405']!
    expect(refusal.headers.Allow!.schema.const).toBe('GET')
    expect(wrongMethods.some((w) => w.path === '/v1/credentials/{user}/{provider}/token' && w.method === 'HEAD')).toBe(true)
  })

  it('a concrete path is not taken for a templated one: DELETE /v1/revocations/condor is 405, Allow: GET, HEAD', async () => {
    // OpenAPI 3.1 §4.8.8.2: concrete paths are matched before templated ones, so /v1/revocations/condor is its own resource.
    const res = await app.request('/v1/revocations/condor', { method: 'DELETE' })
    expect(res.status).toBe(405)
    expect(allowSet(res.headers.get('allow'))).toEqual(new Set(['GET', 'HEAD']))
  })

  it('answers 405 before asking for credentials: what a path supports is public (the OpenAPI document)', async () => {
    const res = await app.request('/v1/credentials', { method: 'PUT' })
    expect(res.status).toBe(405)
    expect(res.headers.get('www-authenticate')).toBeNull()
  })
})
