import { Validator } from '@seriousme/openapi-schema-validator'
import type { Hono } from 'hono'
import { inspectRoutes } from 'hono/dev'
import { describe, expect, it } from 'vitest'
import type { z } from 'zod'
import { createApp } from '../../src/app.ts'
import { OTHER_METHODS_EXTENSION } from '../../src/http/openapi/document.ts'
import { AuditPage, BrokerMetadata, Jwks, Liveness, NotLive, OAuthError, Readiness, RevocationList } from '../../src/http/openapi/response_schemas.ts'
import { testDeps } from '../support/broker_deps.ts'
import { FULL_APP_ADMIN as ADMIN, fullApp } from '../support/full_app.ts'

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const

/** What hono really serves: `METHOD path` for each handler (middleware left out), paths in OpenAPI's `{name}` form. */
function servedRoutes(app: Hono): Set<string> {
  return new Set(inspectRoutes(app)
    .filter((r) => !r.isMiddleware)
    .map((r) => `${r.method} ${r.path.replace(/:(\w+)(\{[^}]*\})?/g, '{$1}')}`))
}

/**
 * What the document lists. The other-methods extension is no route of its own (middleware/method_guard.ts
 * answers it from the routes): test/http/method_not_allowed.test.ts holds it to what is served.
 */
function documentedRoutes(doc: OpenApiDoc): Set<string> {
  const out = new Set<string>()
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) if (item[m]) out.add(`${m.toUpperCase()} ${path}`)
  }
  return out
}

interface Operation { operationId: string; parameters?: Array<{ name: string; in: string; required?: boolean }>; security?: Array<Record<string, string[]>>; responses: Record<string, unknown> }
interface OpenApiDoc {
  openapi: string
  servers: Array<{ url: string }>
  paths: Record<string, Record<string, Operation | undefined>>
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, { type: string; scheme: string }> }
}

/** Every `$ref` (local JSON Pointer, RFC 6901) that names nothing in the document. */
function unresolvedRefs(doc: OpenApiDoc): string[] {
  const refs: string[] = []
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) { v.forEach(walk); return }
    if (v && typeof v === 'object') for (const [k, child] of Object.entries(v)) k === '$ref' ? refs.push(child as string) : walk(child)
  }
  walk(doc)
  return refs.filter((ref) => {
    if (!ref.startsWith('#/')) return true
    let node: unknown = doc
    for (const token of ref.slice(2).split('/').map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'))) {
      node = (node as Record<string, unknown> | undefined)?.[token]
    }
    return node === undefined
  })
}

/** Operations whose declared path parameters are not exactly the template's, or not required. */
function pathParameterProblems(doc: OpenApiDoc): string[] {
  const problems: string[] = []
  for (const [path, item] of Object.entries(doc.paths)) {
    const inTemplate = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!).sort()
    for (const m of METHODS) {
      const op = item[m]
      if (!op) continue
      const declared = (op.parameters ?? []).filter((p) => p.in === 'path')
      const names = declared.map((p) => p.name).sort()
      if (names.join() !== inTemplate.join() || declared.some((p) => p.required !== true)) {
        problems.push(`${m} ${path}: template {${inTemplate.join(',')}}, declared {${names.join(',')}}`)
      }
    }
  }
  return problems
}

async function documentOf(app: Hono): Promise<OpenApiDoc> {
  const res = await app.request('/openapi.json')
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  return await res.json() as OpenApiDoc
}

describe('GET /openapi.json lists exactly the routes the app serves', () => {
  it('with every part mounted: no route missing, none invented', async () => {
    const app = fullApp()
    const served = servedRoutes(app)
    const documented = documentedRoutes(await documentOf(app))
    expect([...served].filter((r) => !documented.has(r)), 'served but not in the document (add it to src/http/openapi/routes.ts)').toEqual([])
    expect([...documented].filter((r) => !served.has(r)), 'in the document but not served').toEqual([])
    // The admin API and the token endpoint are really in there (the comparison is not between two empty sets).
    expect(documented).toContain('POST /token')
    expect(documented).toContain('DELETE /v1/revocations/{id}')
    expect(documented).toContain('POST /admin/policy/explain')
  })

  it('without the admin API and the token endpoint: only what is mounted', async () => {
    const app = createApp(testDeps())
    const documented = documentedRoutes(await documentOf(app))
    expect([...documented].sort()).toEqual([...servedRoutes(app)].sort())
    expect(documented).not.toContain('GET /v1/audit')
    expect(documented).toContain('GET /jwks')
  })
})

describe('the OpenAPI document is well formed', () => {
  it('passes the official OpenAPI 3.1 schema', async () => {
    const doc = await documentOf(fullApp())
    expect(doc.openapi).toBe('3.1.0')
    const validator = new Validator()
    const result = await validator.validate(doc as unknown as Record<string, unknown>)
    expect(result.errors ?? []).toEqual([])
    expect(result.valid).toBe(true)
    expect(validator.version).toBe('3.1')
    // The validator is not a rubber stamp: a document without info.title is refused.
    const broken = structuredClone(doc) as unknown as { info: Record<string, unknown> }
    delete broken.info.title
    expect((await new Validator().validate(broken)).valid).toBe(false)
  })

  it('resolves every $ref inside the document', async () => {
    const doc = await documentOf(fullApp())
    expect(JSON.stringify(doc)).toContain('"$ref"')
    expect(unresolvedRefs(doc)).toEqual([])
    // The check itself finds a dangling reference.
    const broken = structuredClone(doc)
    delete broken.components.schemas.OAuthError
    expect(unresolvedRefs(broken)).toContain('#/components/schemas/OAuthError')
  })

  it('declares every path parameter, and no other, as required', async () => {
    const doc = await documentOf(fullApp())
    expect(doc.paths['/v1/revocations/{id}']).toBeDefined()
    expect(pathParameterProblems(doc)).toEqual([])
    const broken = structuredClone(doc)
    delete broken.paths['/v1/revocations/{id}']!.delete!.parameters
    expect(pathParameterProblems(broken)).toEqual(['delete /v1/revocations/{id}: template {id}, declared {}'])
  })

  it('gives every operation a unique id, a 500 and the bearer scheme of the token it takes', async () => {
    const doc = await documentOf(fullApp())
    for (const scheme of ['adminBearer', 'iamBearer', 'creddBearer']) expect(doc.components.securitySchemes[scheme], scheme).toMatchObject({ type: 'http', scheme: 'bearer' })
    // Not an admin's token (docs/job-credentials.md, docs/pool-ca.md): the user's IAM token, the credd's IDTOKEN.
    const notAdmin: Record<string, string> = { issueCertificate: 'iamBearer', registerCredential: 'iamBearer', jobToken: 'creddBearer' }
    const ids: string[] = []
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const op of [...METHODS.map((m) => item[m]), item[OTHER_METHODS_EXTENSION]]) {
        if (!op) continue
        ids.push(op.operationId)
        expect(op.responses['500'], `${path} ${op.operationId}`).toBeDefined()
        // The CA certificate and CRL are public; every path's other methods are answered 405 before any authentication.
        const admin = ((path.startsWith('/v1/') && !path.startsWith('/v1/ca/')) || path.startsWith('/admin/')) && op !== item[OTHER_METHODS_EXTENSION]
        const scheme = notAdmin[op.operationId] ?? (admin ? 'adminBearer' : undefined)
        expect(op.security, `${path} ${op.operationId}`).toEqual(scheme ? [{ [scheme]: [] }] : [])
        if (admin) expect(op.responses['401'], `${path} ${op.operationId}`).toBeDefined()
      }
    }
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('describes the token endpoint form (RFC 8693 and pilot fields) and the OAuth error object', async () => {
    const doc = await documentOf(fullApp())
    const post = doc.paths['/token']!.post as unknown as { requestBody: { content: Record<string, { schema: { anyOf: Array<{ properties: Record<string, unknown>; required: string[] }> } }> }; responses: Record<string, { content: Record<string, { schema: unknown }> }> }
    const flows = post.requestBody.content['application/x-www-form-urlencoded']!.schema.anyOf
    const fields = new Set(flows.flatMap((f) => Object.keys(f.properties)))
    // RFC 8693 §2.1 request parameters, and the pilot flows' own (docs/pilots.md).
    for (const name of ['grant_type', 'subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope', 'pilot_count', 'slurm_job_id', 'node', 'job_end']) {
      expect(fields, name).toContain(name)
    }
    expect(flows[0]!.required).toEqual(expect.arrayContaining(['grant_type', 'subject_token', 'subject_token_type']))
    expect(post.responses['400']!.content['application/json']!.schema).toEqual({ $ref: '#/components/schemas/OAuthError' })
    expect(doc.components.schemas.OAuthError).toMatchObject({ type: 'object', required: ['error'] })
  })

  it('describes the job-token 403 with the member that says the credential is gone for good, and no other 403 with it', async () => {
    // docs/job-credentials.md: `credential` is "unknown", "revoked" or "outdated" on the job-token read's 403 only.
    const doc = await documentOf(fullApp())
    type Resp = Record<string, { content: Record<string, { schema: { $ref?: string; properties?: Record<string, { enum?: string[] }> } }> }>
    const jobToken = (doc.paths['/v1/credentials/{user}/{provider}/token']!.get as unknown as { responses: Resp }).responses
    const refusal = jobToken['403']!.content['application/json']!.schema
    expect(refusal.properties?.credential?.enum).toEqual(['unknown', 'revoked', 'outdated'])
    expect(Object.keys(refusal.properties ?? {}).sort()).toEqual(['credential', 'error', 'error_description'])
    const register = (doc.paths['/v1/credentials']!.post as unknown as { responses: Resp }).responses
    expect(register['403']!.content['application/json']!.schema).toEqual({ $ref: '#/components/schemas/OAuthError' })
  })

  it('names the broker issuer as the server', async () => {
    expect((await documentOf(fullApp())).servers).toEqual([{ url: 'https://broker.example.org' }])
  })
})

/** A real answer checked against the schema the document was generated from. */
async function answers(res: Response | Promise<Response>, status: number, schema: z.ZodType): Promise<void> {
  const r = await res
  expect(r.status).toBe(status)
  const parsed = schema.safeParse(await r.json())
  expect(parsed.success, parsed.error?.message).toBe(true)
}

describe('the broker answers as its document says', () => {
  const app = fullApp()
  const bearer = { headers: { authorization: `Bearer ${ADMIN}` } }
  it.each([
    ['/healthz', 200, Liveness],
    ['/readyz', 200, Readiness],
    ['/jwks', 200, Jwks],
    ['/.well-known/openid-configuration', 200, BrokerMetadata],
    ['/nope', 404, OAuthError],
    ['/v1/audit', 401, OAuthError],
  ] as const)('GET %s', async (path, status, schema) => {
    await answers(app.request(path), status, schema)
  })

  it('GET /healthz when the write path has stopped for good', async () => {
    await answers(createApp(testDeps({ liveness: () => 'the audit writer thread has stopped' })).request('/healthz'), 503, NotLive)
  })

  it('admin routes, with the bearer token', async () => {
    await answers(app.request('/v1/audit', bearer), 200, AuditPage)
    await answers(app.request('/v1/revocations', bearer), 200, RevocationList)
    await answers(app.request('/v1/revocations?all=maybe', bearer), 400, OAuthError)
    await answers(app.request('/token', { method: 'GET' }), 405, OAuthError)
  })
})
