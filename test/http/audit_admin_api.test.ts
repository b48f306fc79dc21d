import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { bootstrapTokenAuthenticator, loadBootstrapToken, type AdminAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { issued } from '../integration/audit_log.contract.ts'
import { TEST_NOW, testDeps } from '../support/broker_deps.ts'
import { tempDir } from '../support/tmp.ts'

const ADMIN = 'a'.repeat(43)
const bootstrap = bootstrapTokenAuthenticator(createHash('sha256').update(ADMIN).digest())

let store: MemoryStore
let revocations: RevocationService
let app: ReturnType<typeof createApp>

function build(authenticators: AdminAuthenticator[] = [bootstrap]) {
  store = new MemoryStore()
  revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot', 'startd']), sites: new Set(['hpc-b']) }),
    knownIssuers: () => new Set(['https://iam.example.org/']),
  })
  app = createApp(testDeps({ admin: { audit: store, revocations, authenticators } }))
}

const get = (path: string, token = ADMIN) => app.request(path, { headers: { authorization: `Bearer ${token}` } })
const post = (body: unknown, token = ADMIN, type = 'application/json') => app.request('/v1/revocations', {
  method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type }, body: typeof body === 'string' ? body : JSON.stringify(body),
})

beforeEach(() => build())

describe('admin authentication', () => {
  it.each(['/v1/audit', '/v1/revocations', '/v1/revocations/condor'])('GET %s without a token is 401 with a Bearer challenge', async (path) => {
    const res = await app.request(path)
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="condor-token-broker admin"')
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.json()).toMatchObject({ error: 'invalid_token' })
  })

  it('refuses a wrong token, and POST without a token changes nothing', async () => {
    const res = await get('/v1/audit', 'b'.repeat(43))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"')
    expect((await post({ role: 'pilot' }, 'wrong')).status).toBe(401)
    expect(await store.listRevocations()).toEqual([])
  })

  it('refuses a JWT-based admin whose token was revoked', async () => {
    const iamLike: AdminAuthenticator = { authenticate: async (t) => t === 'jwt' ? { id: 'iss,alice', via: 'iam', claims: { jti: 'adm-1', sub: 'alice', iat: TEST_NOW - 5 } } : null }
    build([bootstrap, iamLike])
    expect((await get('/v1/revocations', 'jwt')).status).toBe(200)
    expect((await post({ jti: 'adm-1', reason: 'laptop stolen' })).status).toBe(201)
    const res = await get('/v1/revocations', 'jwt')
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error_description: 'the token has been revoked' })
  })

  it('refuses a revoked caller even with a token IAM minted after the revocation', async () => {
    const iamLike: AdminAuthenticator = {
      authenticate: async (t) => t.startsWith('jwt-') ? { id: 'iss,alice', via: 'iam', claims: { sub: 'alice', client_id: 'ops-cli', iat: Number(t.slice(4)) } } : null,
    }
    build([bootstrap, iamLike])
    expect((await get('/v1/revocations', `jwt-${TEST_NOW - 5}`)).status).toBe(200)
    expect((await post({ sub: 'alice', reason: 'left the project' })).status).toBe(201)
    const fresh = await get('/v1/revocations', `jwt-${TEST_NOW + 60}`)
    expect(fresh.status).toBe(401)
    expect(await fresh.json()).toMatchObject({ error: 'invalid_token', error_description: 'the token has been revoked' })
  })

  it('refuses every caller of a revoked IAM client', async () => {
    const iamLike: AdminAuthenticator = { authenticate: async (t) => t === 'jwt' ? { id: 'iss,bob', via: 'iam', claims: { sub: 'bob', client_id: 'ops-cli', iat: TEST_NOW + 60 } } : null }
    build([bootstrap, iamLike])
    expect((await get('/v1/revocations', 'jwt')).status).toBe(200)
    expect((await post({ client: 'ops-cli' })).status).toBe(201)
    expect((await get('/v1/revocations', 'jwt')).status).toBe(401)
  })

  it('creates a bootstrap token file with mode 0600 and accepts only that token', async () => {
    const file = join(tempDir(), 'admin.token')
    const { sha256, created } = loadBootstrapToken(file)
    expect(created).toBe(true)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const token = readFileSync(file, 'utf8').trim()
    expect(loadBootstrapToken(file).created).toBe(false)
    const a = await bootstrapTokenAuthenticator(sha256).authenticate(token)
    expect(a).toEqual({ id: 'bootstrap', via: 'bootstrap' })
    expect(await bootstrapTokenAuthenticator(sha256).authenticate(`${token}x`)).toBeNull()
  })
})

describe('GET /v1/audit', () => {
  beforeEach(async () => { for (let i = 1; i <= 30; i++) await store.record(issued(i)) })

  it('filters and pages newest first', async () => {
    const res = await get(`/v1/audit?role=pilot&from=${1_800_000_000 + 11}&limit=4`)
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = await res.json() as { records: Array<{ seq: number; hash: string; event: { jti: string } }>; next_cursor?: string }
    expect(body.records.map((r) => r.event.jti)).toEqual(['jti-30', 'jti-28', 'jti-26', 'jti-24'])
    expect(body.records[0]).toMatchObject({ seq: 30, hash: expect.stringMatching(/^[0-9a-f]{64}$/), prev_hash: expect.any(String) })
    const next = await (await get(`/v1/audit?role=pilot&from=${1_800_000_000 + 11}&limit=4&cursor=${body.next_cursor}`)).json() as typeof body
    expect(next.records.map((r) => r.event.jti)).toEqual(['jti-22', 'jti-20', 'jti-18', 'jti-16'])
  })

  it('accepts RFC 3339 times and the sub, caller, jti and decision filters', async () => {
    const from = new Date((1_800_000_000 + 20) * 1000).toISOString()
    const body = await (await get(`/v1/audit?from=${from}&sub=pilot-0@pilots.pool.example.org&caller=caller-2&decision=allow`)).json() as { records: Array<{ event: { jti: string } }> }
    expect(body.records.map((r) => r.event.jti)).toEqual(['jti-20'])
    const j = await (await get('/v1/audit?jti=jti-7')).json() as { records: unknown[] }
    expect(j.records).toHaveLength(1)
  })

  it.each([
    ['limit=0', /limit/], ['limit=5000', /limit/], ['from=yesterday', /from/], ['decision=maybe', /decision/],
    ['bogus=1', /unknown parameter bogus/], ['cursor=%21%21', /cursor/],
  ])('rejects %s with invalid_request', async (qs, msg) => {
    const res = await get(`/v1/audit?${qs}`)
    expect(res.status).toBe(400)
    const body = await res.json() as { error: string; error_description: string }
    expect(body.error).toBe('invalid_request')
    expect(body.error_description).toMatch(msg)
  })
})

describe('RFC 3339 times no calendar holds', () => {
  // RFC 3339 §5.7: a date-mday must exist in its month and year, hours run 00-23, minutes 00-59. Date.parse
  // rolls 2026-02-31 into 3 March and T24:00 into the next day, which would search another range than the
  // one asked for without a word; the console refuses them (0db3703), so does the API.
  it.each(['2026-02-31T10:00:00Z', '2027-02-29T00:00:00Z', '2026-04-31T00:00:00+02:00', '2026-01-01T24:00:00Z', '2100-02-29T00:00:00Z'])('refuses from=%s with invalid_request', async (t) => {
    const res = await get(`/v1/audit?from=${encodeURIComponent(t)}`)
    expect(res.status).toBe(400)
    expect((await res.json() as { error: string }).error).toBe('invalid_request')
  })

  it.each([
    // Leap days that exist (2028 and 2000 are leap years), and an offset whose UTC instant is the day before.
    ['2028-02-29T10:00:00Z', Date.UTC(2028, 1, 29, 10) / 1000],
    ['2000-02-29T00:00:00.500Z', Date.UTC(2000, 1, 29) / 1000],
    ['2026-03-01T00:30:00+01:00', Date.UTC(2026, 1, 28, 23, 30) / 1000],
  ])('accepts from=%s', async (t, epoch) => {
    await store.record({ ...issued(1), time: epoch, jti: 'at-the-edge' })
    const res = await get(`/v1/audit?from=${encodeURIComponent(t)}&to=${epoch}`)
    expect(res.status).toBe(200)
    expect((await res.json() as { records: Array<{ event: { jti: string } }> }).records.map((r) => r.event.jti)).toEqual(['at-the-edge'])
  })
})

describe('GET /v1/audit/summary', () => {
  it('counts issuances and denials per hour by role, site and kind, and denials by reason', async () => {
    await store.record(issued(1))
    await store.record(issued(2))
    await store.record(issued(3))
    await store.record(issued(4, { type: 'token.denied', decision: 'deny', reason: 'no rule matches' }))
    const res = await get(`/v1/audit/summary?from=${TEST_NOW}&to=${TEST_NOW + 7199}&bucket=hour`)
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = await res.json() as { bucketSeconds: number; series: Array<{ by: string; keys: string[]; issued: unknown[]; denied: unknown[] }>; denialsByReason: unknown[] }
    expect(body.bucketSeconds).toBe(3600)
    // issued(i): odd i is role schedd, even i pilot; every record here is an idtoken.
    expect(body.series.find((s) => s.by === 'role')).toEqual({
      by: 'role', keys: ['pilot', 'schedd'],
      issued: [{ bucket: TEST_NOW, counts: { schedd: 2, pilot: 1 } }, { bucket: TEST_NOW + 3600, counts: {} }],
      denied: [{ bucket: TEST_NOW, counts: { pilot: 1 } }, { bucket: TEST_NOW + 3600, counts: {} }],
    })
    expect(body.series.find((s) => s.by === 'token_kind')!.issued[0]).toEqual({ bucket: TEST_NOW, counts: { idtoken: 3 } })
    expect(body.denialsByReason).toEqual([{ reason: 'no rule matches', count: 1 }])
  })

  it('needs an admin and refuses a range of too many buckets', async () => {
    expect((await app.request('/v1/audit/summary')).status).toBe(401)
    const wide = await get(`/v1/audit/summary?from=${TEST_NOW - 30 * 86400}&to=${TEST_NOW}&bucket=hour`)
    expect(wide.status).toBe(400)
    expect(await wide.json()).toMatchObject({ error: 'invalid_request' })
    expect((await get(`/v1/audit/summary?from=${TEST_NOW - 30 * 86400}&to=${TEST_NOW}&bucket=day`)).status).toBe(200)
    expect((await get('/v1/audit/summary?bucket=week')).status).toBe(400)
  })
})

describe('revocations API', () => {
  it('revokes by role and returns the bumped generation; the expression is one comparison', async () => {
    const res = await post({ role: 'pilot', reason: 'factory compromised' })
    expect(res.status).toBe(201)
    expect(await res.json()).toEqual({ revocation: {
      id: 1, kind: 'role', value: 'pilot', revoked_at: TEST_NOW, until: TEST_NOW + 86400, gen: 2, reason: 'factory compromised', revoked_by: 'bootstrap',
    } })
    const cfg = await get('/v1/revocations/condor')
    expect(cfg.headers.get('content-type')).toMatch(/^text\/plain/)
    expect(await cfg.text()).toContain('SEC_TOKEN_REVOCATION_EXPR = (ctb_role =?= "pilot" && ctb_gen < 2)\n')
    expect(await (await get('/v1/revocations/condor?format=json')).json()).toMatchObject({ expr: '(ctb_role =?= "pilot" && ctb_gen < 2)', clauses: 1 })
    const audit = (await store.query({ limit: 5, type: 'token.revoked' })).records[0]!.event
    expect(audit).toMatchObject({ caller: { sub: 'bootstrap' }, role: 'pilot', reason: 'factory compromised', requestId: expect.any(String) })
  })

  it('revokes a jti until the exp the audit log recorded for it', async () => {
    await store.record(issued(5))
    const body = await (await post({ jti: 'jti-5' })).json() as { revocation: { until: number } }
    expect(body.revocation.until).toBe(1_800_000_000 + 5 + 3600)
    const list = await (await get('/v1/revocations')).json() as { revocations: unknown[] }
    expect(list.revocations).toHaveLength(1)
  })

  // A jti entry leaves the expression, and the broker's own check, at its until: an exp given with the
  // request that is earlier than the one the audit log recorded (a typo, a hand-edited teardown manifest)
  // must not let the token become valid again while it still is.
  it('keeps a jti revoked until the exp the audit log recorded, even when the request names an earlier one', async () => {
    await store.record(issued(5))
    const recordedExp = 1_800_000_000 + 5 + 3600
    const body = await (await post({ jti: 'jti-5', exp: TEST_NOW + 10 })).json() as { revocation: { until: number } }
    expect(body.revocation.until).toBe(recordedExp)
  })

  it.each([
    [{}, /exactly one/], [{ jti: 'a', sub: 'b' }, /exactly one/], [{ sub: 'x" || true || "' }, /quotes/],
    [{ role: 'r', extra: 1 }, /unknown field extra/], [{ role: 5 }, /role/], ['{not json', /JSON/],
  ])('rejects %j with invalid_request and stores nothing', async (body, msg) => {
    const res = await post(body)
    expect(res.status).toBe(400)
    expect((await res.json() as { error_description: string }).error_description).toMatch(msg)
    expect(await store.listRevocations()).toEqual([])
  })

  it.each([
    [{ role: 'stardt' }, /unknown role .stardt.: no policy defines it and no token was issued for it \(known roles: pilot, startd\)/],
    [{ site: 'hpc-x' }, /unknown site .hpc-x..*known sites: hpc-b/],
    [{ site: 'hpc-x', dry_run: true }, /unknown site .hpc-x./],
  ])('refuses %j: an unknown role or site would revoke nothing', async (body, msg) => {
    const res = await post(body)
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(msg) })
    expect(await store.listRevocations()).toEqual([])
  })

  it('accepts a role the policy no longer grants while the audit log shows tokens issued for it', async () => {
    await store.record(issued(1))
    expect((await post({ role: 'schedd' })).status).toBe(201)
  })

  it('dry_run counts the live tokens that would be revoked and stores nothing', async () => {
    for (let i = 0; i < 10; i++) await store.record(issued(i))
    await store.record(issued(10, { exp: TEST_NOW - 1 }))
    expect((await post({ jti: 'jti-2' })).status).toBe(201)
    const before = await store.query({ limit: 1000 })
    // pilot tokens: jti-0, 2, 4, 6, 8 live, jti-10 expired; jti-2 is already revoked.
    const res = await post({ role: 'pilot', dry_run: true })
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ dry_run: { kind: 'role', value: 'pilot', live_tokens: 4 } })
    expect(await (await post({ sub: 'pilot-1@pilots.pool.example.org', dry_run: true })).json()).toMatchObject({ dry_run: { live_tokens: 2 } })
    expect(await (await post({ client: 'pilot-factory', dry_run: true })).json()).toMatchObject({ dry_run: { live_tokens: 9 } })
    expect(await store.listRevocations()).toHaveLength(1)
    expect((await store.query({ limit: 1000 })).records).toEqual(before.records)
  })

  it('refuses a jti exp beyond now plus the longest token lifetime: no token lives longer', async () => {
    const res = await post({ jti: 'x', exp: 99_999_999_999_999 })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ error: 'invalid_request', error_description: `exp must be at most ${TEST_NOW + 86400} (now plus the longest token lifetime, 86400 s): no token the broker issues lives longer` })
    expect(await store.listRevocations()).toEqual([])
    const ok = await post({ jti: 'x', exp: TEST_NOW + 86400 })
    expect(ok.status).toBe(201)
  })

  describe('DELETE /v1/revocations/{id} lifts an entry', () => {
    const del = (id: string, body?: unknown, token = ADMIN) => app.request(`/v1/revocations/${id}`, {
      method: 'DELETE', headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })

    it('lifts it, audits token.unrevoked, and drops it from the HTCondor expression', async () => {
      expect((await post({ site: 'hpc-b' })).status).toBe(201)
      expect((await post({ jti: 'j-1', exp: TEST_NOW + 60 })).status).toBe(201)
      const res = await del('1', { reason: 'false alarm' })
      expect(res.status).toBe(200)
      expect(res.headers.get('cache-control')).toBe('no-store')
      expect(await res.json()).toEqual({ revocation: {
        id: 1, kind: 'site', value: 'hpc-b', revoked_at: TEST_NOW, until: TEST_NOW + 86400, revoked_by: 'bootstrap', lifted_at: TEST_NOW, lifted_by: 'bootstrap',
      } })
      expect(await (await get('/v1/revocations/condor?format=json')).json()).toMatchObject({ expr: 'jti =?= "j-1"', clauses: 1 })
      expect((await (await get('/v1/revocations')).json() as { revocations: Array<{ id: number }> }).revocations.map((r) => r.id)).toEqual([2])
      const audit = (await store.query({ limit: 5, type: 'token.unrevoked' })).records[0]!.event
      expect(audit).toMatchObject({ caller: { sub: 'bootstrap' }, site: 'hpc-b', reason: 'false alarm', requestId: expect.any(String), detail: { lift: { id: 1, liftedAt: TEST_NOW, liftedBy: 'bootstrap' } } })
      expect(await store.verifyRevocations()).toEqual({ ok: true, revocations: 2 })
      expect(revocations.isRevoked({ ctb_site: 'hpc-b', iat: TEST_NOW - 5 })).toBe(false)
    })

    it.each([
      ['7', 404, 'no revocation has id 7'],
      ['abc', 404, 'no such revocation: ids are positive integers (see GET /v1/revocations?all=true)'],
    ])('answers %s with %i in the OAuth error shape', async (id, status, description) => {
      const res = await del(id)
      expect(res.status).toBe(status)
      expect(await res.json()).toEqual({ error: 'invalid_request', error_description: description })
    })

    it('refuses to lift twice (404) and to lift a role revocation (400), writing nothing', async () => {
      expect((await post({ sub: 'alice' })).status).toBe(201)
      expect((await post({ role: 'pilot' })).status).toBe(201)
      expect((await del('1')).status).toBe(200)
      const before = (await store.query({ limit: 100 })).records.length
      const again = await del('1')
      expect(again.status).toBe(404)
      expect(await again.json()).toEqual({ error: 'invalid_request', error_description: 'revocation 1 was already lifted' })
      const role = await del('2')
      expect(role.status).toBe(400)
      expect(await role.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/^revocation 2 revokes role pilot by generation and cannot be lifted/) })
      expect((await store.query({ limit: 100 })).records).toHaveLength(before)
    })

    it('needs the same admin authentication as POST', async () => {
      expect((await post({ sub: 'alice' })).status).toBe(201)
      expect((await del('1', undefined, 'wrong')).status).toBe(401)
      expect(await store.listRevocations({ activeAt: TEST_NOW })).toHaveLength(1)
    })
  })

  it('binds a sub revocation to a trusted issuer, and refuses an unknown issuer or iss on another kind', async () => {
    const res = await post({ sub: 'alice', iss: 'https://iam.example.org/' })
    expect(res.status).toBe(201)
    expect(await res.json()).toMatchObject({ revocation: { kind: 'sub', value: 'alice', iss: 'https://iam.example.org/' } })
    expect(revocations.blockedCaller({ iss: 'https://iam.example.org/', sub: 'alice' })).toBe('this caller has been revoked')
    expect(revocations.blockedCaller({ iss: 'https://other.example.org/', sub: 'alice' })).toBeUndefined()
    const unknown = await post({ client: 'factory', iss: 'https://evil.example.org/' })
    expect(unknown.status).toBe(400)
    expect(await unknown.json()).toEqual({ error: 'invalid_request', error_description: "iss 'https://evil.example.org/' is not a trusted IAM issuer (trusted: https://iam.example.org/)" })
    const role = await post({ role: 'pilot', iss: 'https://iam.example.org/' })
    expect(await role.json()).toEqual({ error: 'invalid_request', error_description: 'iss applies only to sub and client revocations' })
    expect(await store.listRevocations()).toHaveLength(1)
    expect(await store.verifyRevocations()).toEqual({ ok: true, revocations: 1 })
  })

  // exp bounds one token's entry; on any other kind it was dropped, and the entry lasted the longest lifetime.
  it.each([{ sub: 'alice' }, { role: 'pilot' }, { site: 'hpc-b' }, { client: 'factory' }, { sub: 'alice', dry_run: true }])('refuses exp with %j, naming the field', async (selector) => {
    const res = await post({ ...selector, exp: TEST_NOW + 60 })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ error: 'invalid_request', error_description: 'exp applies only to jti revocations' })
    expect(await store.listRevocations()).toEqual([])
  })

  // The expression is pushed as a config line, and HTCondor's config reader substitutes "$(NAME)" (an
  // undefined name becomes the empty string) and "$ENV(...)" in every value before it parses the ClassAd:
  // a sub holding one would be pushed as a clause for some other sub, and the revoked token stays valid.
  it.each(['pilot-$(FULL_HOSTNAME)@pilots.td', 'x$ENV(HOME)', 'a$'])('refuses a value with "$" (%s): HTCondor would expand it as a config macro', async (sub) => {
    const res = await post({ sub })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_request' })
    expect(await store.listRevocations()).toEqual([])
    expect(await (await get('/v1/revocations/condor?format=json')).json()).toMatchObject({ expr: 'false', clauses: 0 })
  })

  // A client entry adds no clause to the expression (our tokens carry no client_id): it only stops the broker
  // issuing to that IAM client, which names its clients as it likes. Refusing "$" there protects nothing
  // and leaves such a client impossible to stop.
  it('blocks an IAM client whose id holds "$": a client entry never reaches the expression', async () => {
    const res = await post({ client: 'svc$factory' })
    expect(res.status).toBe(201)
    expect(revocations.blockedCaller({ iss: 'https://iam.example.org/', sub: 'x', client_id: 'svc$factory' })).toBe('client svc$factory has been revoked')
    expect(await (await get('/v1/revocations/condor?format=json')).json()).toMatchObject({ expr: 'false', clauses: 0, unexpressed: 0 })
  })

  it('still answers the expression, without it, when such a value was stored before "$" was refused', async () => {
    // Stored straight in the store, as a version that accepted "$" did.
    await store.revoke({ kind: 'sub', value: 'pilot-$(FULL_HOSTNAME)@pilots.td', revokedAt: TEST_NOW, until: TEST_NOW + 3600 },
      { type: 'token.revoked', time: TEST_NOW, caller: { sub: 'admin' }, decision: 'allow' })
    expect((await post({ jti: 'a'.repeat(32) })).status).toBe(201)
    const res = await get('/v1/revocations/condor?format=json')
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ expr: `jti =?= "${'a'.repeat(32)}"`, clauses: 1, unexpressed: 1 })
    const text = await (await get('/v1/revocations/condor')).text()
    expect(text).toContain('# 1 active revocations could not be expressed')
    expect(text).toContain(`SEC_TOKEN_REVOCATION_EXPR = jti =?= "${'a'.repeat(32)}"`)
  })

  it('requires a JSON content type', async () => {
    expect((await post({ role: 'x' }, ADMIN, 'text/plain')).status).toBe(400)
  })

  it('returns server_error and stores no revocation when the store fails for no outage (a bug)', async () => {
    store.revoke = async () => { throw new TypeError("Cannot read properties of undefined (reading 'seq')") }
    const res = await post({ role: 'pilot' })
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: 'server_error' })
    expect(await store.listRevocations()).toEqual([])
  })

  it('answers 503 temporarily_unavailable with Retry-After, and stores nothing, once the store has closed (serve stopping)', async () => {
    await store.close()
    const res = await post({ role: 'pilot' })
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable' })
  })
})

describe('a revocation or lift whose re-read fails after it committed', () => {
  // The change and its audit record committed; only the read of the active entries after it met an outage
  // (an SQLite lock, a PostgreSQL read cut off). A 503 "nothing was issued or changed" would be false, and
  // its retry would revoke a second time, or be told "already lifted".
  function failReadsAfterCommit() {
    const list = store.listRevocations.bind(store)
    const revoke = store.revoke.bind(store)
    const lift = store.lift.bind(store)
    let failing = false
    store.listRevocations = (o) => failing ? Promise.reject(new AuditStoreUnavailable(new Error('database is locked'), 'read')) : list(o)
    store.revoke = async (r, e) => { const done = await revoke(r, e); failing = true; return done }
    store.lift = async (l, e) => { const done = await lift(l, e); failing = true; return done }
    return () => { failing = false }
  }

  it('POST /v1/revocations answers 201 with the entry, stored once and enforced', async () => {
    const recover = failReadsAfterCommit()
    const res = await post({ jti: 'j-after-commit', exp: TEST_NOW + 600 })
    expect(res.status).toBe(201)
    expect(await res.json()).toMatchObject({ revocation: { kind: 'jti', value: 'j-after-commit', until: TEST_NOW + 600 } })
    expect(revocations.isRevoked({ jti: 'j-after-commit', iat: TEST_NOW - 5 })).toBe(true)
    recover()
    expect((await store.listRevocations()).filter((r) => r.value === 'j-after-commit')).toHaveLength(1)
  })

  it('DELETE /v1/revocations/{id} answers 200 with the lifted entry, no longer enforced', async () => {
    const made = await (await post({ jti: 'j-lifted', exp: TEST_NOW + 600 })).json() as { revocation: { id: number } }
    const recover = failReadsAfterCommit()
    const res = await app.request(`/v1/revocations/${made.revocation.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ revocation: { id: made.revocation.id, lifted_at: TEST_NOW } })
    expect(revocations.isRevoked({ jti: 'j-lifted', iat: TEST_NOW - 5 })).toBe(false)
    recover()
  })
})
