/**
 * Access logs: one JSON line per request, on the socket fast path (POST /token) and through the hono
 * app (everything else), with who asked for what and how it ended, and never a credential. Real
 * requests against the broker `serve` runs (startBroker), its log captured line by line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { tokenSecrets } from '../security/support/attack.ts'
import { rawGet, rawPost } from '../security/support/raw_http.ts'
import { encodeForm, exchangeForm, IDTOKEN, startSecurityBroker, viaApp, type Reply, type SecurityBroker } from '../security/support/security_broker.ts'
import { testDeps } from '../support/broker_deps.ts'

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
const EP = 'ep-1.cloud-a.example.org'

let sb: SecurityBroker
/** Every credential a request carried or an answer handed out; none may reach a log line. */
const secrets: string[] = []

beforeAll(async () => { sb = await startSecurityBroker() })
afterAll(async () => { await sb?.close() })

function accessLines(): Record<string, unknown>[] {
  return sb.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.msg === 'request')
}

function lineFor(reply: Reply): Record<string, unknown> {
  const id = reply.headers['x-request-id']
  expect(id).toMatch(/^[0-9a-f-]{36}$/)
  const lines = accessLines().filter((r) => r.requestId === id)
  expect(lines, `access lines for ${id}`).toHaveLength(1)
  return lines[0]!
}

async function post(form: Record<string, string | string[]>, clientRequestId: string): Promise<Reply> {
  for (const v of Object.values(form)) if (typeof v === 'string' && v.length > 40) secrets.push(v, ...tokenSecrets(v))
  const o = await rawPost(sb.port, '/token', encodeForm(form), { ...FORM, 'x-request-id': clientRequestId })
  if (o.kind !== 'reply') throw new Error(`no reply: ${o.kind}`)
  const issued = o.json?.access_token
  if (typeof issued === 'string') secrets.push(issued, ...tokenSecrets(issued))
  return o
}

describe('access log', () => {
  it('logs a successful exchange on the fast path: caller, role, kind, allow, status, latency', async () => {
    const reply = await post(exchangeForm(await sb.token.provisioner(), 'startd', { host: EP }), 'job-42.a')
    expect(reply.status).toBe(200)
    const line = lineFor(reply)
    expect(line).toMatchObject({
      level: 'info', method: 'POST', path: '/token', status: 200, decision: 'allow', role: 'startd', tokenKind: 'idtoken',
      clientRequestId: 'job-42.a', caller: { iss: sb.iam.issuer, client_id: 'ctb-cloud-a-provisioner' },
    })
    expect(typeof (line.caller as { sub?: unknown }).sub).toBe('string')
    expect(line.ms).toBeTypeOf('number')
    expect(line.ms as number).toBeGreaterThanOrEqual(0)
    expect(line).not.toHaveProperty('error')
  })

  it('logs a policy refusal as deny with its OAuth error code', async () => {
    const reply = await post(exchangeForm(await sb.token.provisioner(), 'central-manager', { host: EP }), 'refusal-1')
    expect(reply.status).toBe(400)
    expect(lineFor(reply)).toMatchObject({ status: 400, decision: 'deny', error: reply.json?.error, role: 'central-manager', caller: { client_id: 'ctb-cloud-a-provisioner' } })
  })

  it('logs a refusal of an unverifiable token as deny, with no caller and quietly (no warning, no stack)', async () => {
    const before = sb.logs.length
    const garbage = `eyJhbGciOiJFUzI1NiJ9.${'x'.repeat(40)}.${'s3cr3tSignature'.repeat(3)}`
    const reply = await post(exchangeForm(garbage, 'startd', { host: EP }), 'garbage-1')
    expect(reply.status).toBe(400)
    const line = lineFor(reply)
    expect(line).toMatchObject({ status: 400, decision: 'deny', error: reply.json?.error })
    expect(line).not.toHaveProperty('caller')
    expect(sb.logs.slice(before).filter((l) => !l.includes('"msg":"request"'))).toEqual([])
  })

  it('logs a pilot enrolment, redemption and renewal with their token kinds', async () => {
    const enrol = await post({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: await sb.token.pilotFactory(),
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1', lifetime: '3600',
    }, 'enrol-1')
    expect(enrol.status, enrol.text).toBe(200)
    expect(lineFor(enrol)).toMatchObject({ status: 200, decision: 'allow', role: 'pilot', tokenKind: 'pilot_enrolment', caller: { client_id: 'ctb-hpc-b-pilot-factory' } })
    const redeem = await post({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: enrol.json!.access_token as string, subject_token_type: ENROLMENT,
      slurm_job_id: '4242', node: 'node-1.hpc-b.example.org', job_end: String(Math.floor(Date.now() / 1000) + 7200),
    }, 'redeem-1')
    expect(redeem.status, redeem.text).toBe(200)
    expect(lineFor(redeem)).toMatchObject({ status: 200, decision: 'allow', tokenKind: 'idtoken' })
    const renew = await post({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: redeem.json!.access_token as string, subject_token_type: IDTOKEN }, 'renew-1')
    expect(renew.status, renew.text).toBe(200)
    expect(lineFor(renew)).toMatchObject({ status: 200, decision: 'allow', tokenKind: 'idtoken' })
  })

  it('logs admin calls through the hono app with the principal, and the path without its query', async () => {
    const ok = await viaApp(sb.app, 'GET', '/v1/audit?limit=1', undefined, { authorization: `Bearer ${sb.bootstrapToken}`, 'x-request-id': 'admin-1' })
    expect(ok.status).toBe(200)
    expect(lineFor(ok)).toMatchObject({ method: 'GET', path: '/v1/audit', status: 200, principal: 'bootstrap', clientRequestId: 'admin-1' })
    expect(lineFor(ok)).not.toHaveProperty('decision')
    const leakyQuery = 'qs-secret-0123456789abcdefghijklmnop'
    secrets.push(leakyQuery)
    const refused = await viaApp(sb.app, 'GET', `/v1/audit?access_token=${leakyQuery}`, undefined, { authorization: 'Bearer not-a-valid-admin-token-0123456789' })
    expect(refused.status).toBe(401)
    expect(lineFor(refused)).toMatchObject({ path: '/v1/audit', status: 401, error: 'invalid_token' })
    expect(lineFor(refused)).not.toHaveProperty('principal')
  })

  it('logs requests the app answers on the socket too (not only POST /token)', async () => {
    const o = await rawGet(sb.port, '/healthz')
    if (o.kind !== 'reply') throw new Error(o.kind)
    expect(lineFor(o)).toMatchObject({ method: 'GET', path: '/healthz', status: 200 })
  })

  it('logs no token a client pasted into the path, and still the path around it', async () => {
    // A client that puts its access token where the path goes (a misbuilt URL, a wrong base URL).
    const token = await sb.token.provisioner()
    secrets.push(token, ...tokenSecrets(token))
    const o = await rawGet(sb.port, `/v1/certificates/${token}`)
    if (o.kind !== 'reply') throw new Error(o.kind)
    expect(o.status).toBe(404)
    expect(lineFor(o)).toMatchObject({ method: 'GET', path: '/v1/certificates/[token]', status: 404 })
  })

  it('logs and answers with no token sent where no route reads one: stray form fields, headers, JSON bodies', async () => {
    const token = await sb.token.provisioner()
    secrets.push(token, ...tokenSecrets(token))
    const form = exchangeForm(token, 'startd', { host: EP })
    // Misspelt and unsupported fields, each holding the caller's token; and the token in a header /token ignores.
    const stray = [
      { ...form, subjet_token: token }, { ...form, actor_token: token, actor_token_type: 'urn:ietf:params:oauth:token-type:access_token' },
      { ...form, client_assertion: token, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' },
      { ...form, scope: token }, { ...form, audience: token.slice(0, 500) }, { ...form, role: token },
    ]
    for (const f of stray) {
      const o = await rawPost(sb.port, '/token', encodeForm(f), { ...FORM, authorization: `Bearer ${token}` })
      if (o.kind !== 'reply') throw new Error(o.kind)
      for (const s of tokenSecrets(token)) expect(JSON.stringify(o.json ?? {}), 'the answer echoes the token').not.toContain(s)
    }
    // A JSON body on the admin API with the token as a key and as a value, under a token no admin holds.
    const admin = await viaApp(sb.app, 'POST', '/v1/revocations', JSON.stringify({ sub: 'x', [token]: token }), {
      authorization: `Bearer ${sb.bootstrapToken}`, 'content-type': 'application/json',
    })
    expect(admin.status).toBe(400)
    expect(admin.json).toEqual({ error: 'invalid_request', error_description: 'unknown field [token]' })
    for (const s of tokenSecrets(token)) expect(JSON.stringify(admin.json ?? {}), 'the admin answer echoes the token').not.toContain(s)
  })

  it('never writes a token, a credential, a client secret, the bootstrap token or key material', () => {
    const all = [...secrets, ...sb.secrets()]
    expect(all.length).toBeGreaterThan(10)
    const log = sb.logs.join('')
    expect(accessLines().length).toBeGreaterThanOrEqual(8)
    for (const s of all) expect(log.includes(s), `a secret in the log: ${s.slice(0, 12)}...`).toBe(false)
  })
})

describe('log.requests', () => {
  it('false: no access lines; true: one per request', async () => {
    for (const requests of [false, true]) {
      const lines: string[] = []
      const deps = testDeps()
      const app = createApp({ ...deps, config: { ...deps.config, log: { ...deps.config.log, requests } }, log: createLogger((l) => { lines.push(l) }) })
      expect((await app.request('/healthz')).status).toBe(200)
      expect((await app.request('/nowhere')).status).toBe(404)
      expect(lines.filter((l) => l.includes('"msg":"request"'))).toHaveLength(requests ? 2 : 0)
    }
  })
})
