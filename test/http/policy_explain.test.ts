import { Hono, type MiddlewareHandler } from 'hono'
import { describe, expect, it } from 'vitest'
import { oauthErrorResponse } from '../../src/http/oauth_error_response.ts'
import { policyExplainRoutes } from '../../src/http/routes/policy_explain.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { loadPolicies } from '../../src/policy/load.ts'

const ISS = 'https://iam.example.org/'
const CTX: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'users.example.org', vars: { IAM_ISSUER: ISS }, scitokenProfile: 'wlcg', maxLifetime: {} }
const holder = { current: loadPolicies('policies', CTX) }

/** Stands in for the admin-auth middleware: a fixed bearer value, 401 otherwise. */
const adminAuth: MiddlewareHandler = async (c, next) => {
  if (c.req.header('authorization') !== 'Bearer admin') return c.json({ error: 'invalid_token' }, 401)
  await next()
  return undefined
}

function app(): Hono {
  const a = new Hono()
  // Nobody is revoked here: test/http/policy_explain_blocked.test.ts explains blocked callers.
  a.route('/', policyExplainRoutes({ policy: holder, adminAuth, blocks: { callerBlock: () => undefined, blockedIdentity: () => undefined } }))
  a.onError(oauthErrorResponse(silentLogger))
  return a
}

function post(body: unknown, auth = 'Bearer admin'): Promise<Response> {
  return Promise.resolve(app().request('/admin/policy/explain', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: auth },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  }))
}

describe('POST /admin/policy/explain', () => {
  it('explains an allow: decisive rule, identity, every rule traced', async () => {
    const res = await post({ subject: { iss: ISS, sub: 'svc', client_id: 'ctb-cloud-a-provisioner' }, role: 'startd', host: 'ep-3.cloud-a.example.org' })
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const j = await res.json() as { decision: Record<string, unknown>; rules: { ruleId: string; outcome: string; decisive: boolean }[]; policyDigest: string }
    expect(j.decision).toMatchObject({ allow: true, ruleId: 'cloud-a-execute-points', identity: 'startd-cloud-a-ep-3@eps.pool.example.org' })
    expect(j.rules.map((r) => r.ruleId)).toEqual(holder.current.rules.map((r) => r.id))
    expect(j.rules.find((r) => r.decisive)).toMatchObject({ ruleId: 'cloud-a-execute-points', outcome: 'allowed' })
    expect(j.policyDigest).toBe(holder.current.digest)
  })

  it('explains a denial with the OAuth error the token endpoint would send', async () => {
    const res = await post({ subject: { iss: ISS, sub: 'u', groups: ['/htc/users'], preferred_username: 'alice' }, role: 'job', scope: 'READ ADMINISTRATOR' })
    expect(res.status).toBe(200)
    const j = await res.json() as { decision: Record<string, unknown> }
    expect(j.decision).toEqual({ allow: false, ruleId: 'htc-users', error: 'invalid_scope', reason: expect.stringMatching(/ADMINISTRATOR exceeds what role job allows/) })
  })

  it('refuses a level spelled with a non-ASCII letter that upper-cases to ASCII, as POST /token does', async () => {
    const ask = (scope: string) => post({ subject: { iss: ISS, sub: 'svc', client_id: 'ctb-cloud-a-provisioner' }, role: 'startd', host: 'ep-3.cloud-a.example.org', scope })
    const spoofed = await (await ask('ADVERTI\u017fE_STARTD')).json() as { decision: Record<string, unknown> }
    expect(spoofed.decision).toMatchObject({ allow: false, error: 'invalid_scope' })
    const plain = await (await ask('ADVERTISE_STARTD')).json() as { decision: Record<string, unknown> }
    expect(plain.decision).toMatchObject({ allow: true, scopes: ['ADVERTISE_STARTD'] })
  })

  it('is closed to callers the admin middleware refuses', async () => {
    const res = await post({ subject: { iss: ISS, sub: 'u' }, role: 'job' }, 'Bearer nope')
    expect(res.status).toBe(401)
  })

  it.each([
    ['not JSON', '{nope', /the body must be a JSON object/],
    ['missing role', { subject: { iss: ISS, sub: 'u' } }, /^role: /],
    ['unknown field', { subject: { iss: ISS, sub: 'u' }, role: 'job', sneaky: 1 }, /^unknown field sneaky$/],
    ['unknown nested field', { subject: { iss: ISS, sub: 'u', sneaky: 1 }, role: 'job' }, /^unknown field subject\.sneaky$/],
    // A client that put its token where a name goes does not find it copied back (docs/errors.md).
    ['a token as a field name', { subject: { iss: ISS, sub: 'u' }, role: 'job', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlMTIzNA': 1 }, /^unknown field \[token\]$/],
    ['bad token_type', { subject: { iss: ISS, sub: 'u' }, role: 'job', token_type: 'x509' }, /^token_type: /],
    ['negative lifetime', { subject: { iss: ISS, sub: 'u' }, role: 'job', lifetime: -1 }, /^lifetime: /],
    ['pilot_count 0', { subject: { iss: ISS, sub: 'u' }, role: 'pilot', pilot_enrolment: { pilot_count: 0 } }, /^pilot_enrolment\.pilot_count: /],
    // POST /token refuses an enrolment that states a slurm_job_id (a redemption's field): explain must not allow it.
    ['an enrolment with a slurm_job_id', { subject: { iss: ISS, sub: 'u' }, role: 'pilot', params: { site: 'hpc-b', slurm_job_id: '5' }, pilot_enrolment: { pilot_count: 1 } }, /^pilot_enrolment: a pilot enrolment is explained from role, params\.site and pilot_enrolment only/],
    ['an enrolment with a token type', { subject: { iss: ISS, sub: 'u' }, role: 'pilot', token_type: 'idtoken', pilot_enrolment: { pilot_count: 1 } }, /^pilot_enrolment: a pilot enrolment is explained from role, params\.site and pilot_enrolment only/],
  ])('bad body (%s) is invalid_request, never a 500', async (_name, body, message) => {
    const res = await post(body)
    expect(res.status).toBe(400)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const j = await res.json() as { error: string; error_description: string }
    expect(j.error).toBe('invalid_request')
    expect(j.error_description).toMatch(message)
  })
})

// policies/20-hpc-slurm.yaml: rule hpc-b-pilots grants the factory pilot enrolments for hpc-b with max_count 256,
// enrolment_lifetime { default: 2d, max: 7d } and up_to: true (docs/pilots.md, docs/provisioning.md#plan).
describe('POST /admin/policy/explain: a pilot enrolment', () => {
  const factory = { iss: ISS, sub: 'svc', client_id: 'ctb-hpc-b-pilot-factory' }
  const ask = async (pilot_enrolment: Record<string, number>) => {
    const res = await post({ subject: factory, role: 'pilot', params: { site: 'hpc-b' }, pilot_enrolment })
    expect(res.status).toBe(200)
    return await res.json() as { decision: Record<string, unknown>; limits?: Record<string, unknown>; rules: unknown[] }
  }
  // identity: the shipped grant names no pilot.identity, so pilots carry the default (src/contract/pilot.ts).
  const limits = { max_count: 256, enrolment_lifetime: { default: 2 * 86400, max: 7 * 86400 }, up_to: true, max_restarts: 2, identity: 'pilot+{site}+{enrolment}+{slurm_job_id}-{node}@pilots.pool.example.org' }

  it('allows the maximum count, with the grant it was decided under', async () => {
    const j = await ask({ pilot_count: 256, lifetime: 3600 })
    expect(j.decision).toEqual({ allow: true, ruleId: 'hpc-b-pilots', role: 'pilot', site: 'hpc-b', count: 256, lifetime: 3600 })
    expect(j.limits).toEqual(limits)
  })

  it('refuses one more than max_count as the token endpoint does', async () => {
    const j = await ask({ pilot_count: 257, lifetime: 3600 })
    expect(j.decision).toEqual({ allow: false, ruleId: 'hpc-b-pilots', error: 'invalid_request', reason: 'pilot_count 257 exceeds the maximum 256 for role pilot' })
    expect(j.limits).toEqual(limits)
  })

  it('trims a lifetime above enrolment_lifetime.max under up_to, and says so', async () => {
    const j = await ask({ pilot_count: 8, lifetime: 8 * 86400 })
    expect(j.decision).toMatchObject({ allow: true, count: 8, lifetime: 7 * 86400, trimmed: ['lifetime'] })
  })

  it('gives no limits when no rule with a pilot grant admits the caller', async () => {
    const res = await post({ subject: { iss: ISS, sub: 'nobody' }, role: 'pilot', params: { site: 'hpc-b' }, pilot_enrolment: { pilot_count: 1 } })
    const j = await res.json() as { decision: Record<string, unknown>; limits?: unknown }
    expect(j.decision).toMatchObject({ allow: false, error: 'unauthorized_client' })
    expect(j.limits).toBeUndefined()
  })
})
