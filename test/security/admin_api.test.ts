/**
 * The admin API (/v1/audit, /v1/revocations, /v1/revocations/condor, /admin/policy/explain) and the
 * public documents (discovery, JWKS): bearer-token attacks, path variants that might slip past the
 * auth middleware, and hostile parameters from an authenticated admin. Through the socket (hono behind
 * the fast path) and through app.request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DESCRIPTION_CHARS, tokenSecrets } from './support/attack.ts'
import { attackerKey, provisionerClaims, signRaw } from './support/forge.ts'
import { rawExchange, type RawOutcome } from './support/raw_http.ts'
import { BROKER_AUDIENCE, encodeForm, exchangeForm, parseReplyText, startSecurityBroker, viaApp, type Reply, type SecurityBroker } from './support/security_broker.ts'

let sb: SecurityBroker
const counts = new Map<string, { sent: number; served: number; serverErrors: number }>()
const tallyOf = (cls: string) => counts.get(cls) ?? (counts.set(cls, { sent: 0, served: 0, serverErrors: 0 }), counts.get(cls)!)

beforeAll(async () => { sb = await startSecurityBroker() })
afterAll(async () => {
  console.log('\nsecurity suite: admin API')
  console.table(Object.fromEntries([...counts].map(([k, v]) => [k, { 'attacks sent': v.sent, 'served without valid auth': v.served, '5xx': v.serverErrors }])))
  await sb?.close()
})

type Method = 'GET' | 'POST'
const ENDPOINTS: [Method, string, string | undefined, string][] = [
  ['GET', '/v1/audit', undefined, ''],
  ['GET', '/v1/revocations', undefined, ''],
  ['GET', '/v1/revocations/condor', undefined, ''],
  ['POST', '/v1/revocations', JSON.stringify({ role: 'startd', reason: 'attack' }), 'application/json'],
  ['POST', '/admin/policy/explain', JSON.stringify({ subject: { iss: 'x', sub: 'y' }, role: 'startd' }), 'application/json'],
]

async function both(method: Method, path: string, body: string | undefined, headers: Record<string, string>): Promise<Reply[]> {
  const raw = await rawExchange(sb.port, {
    head: [`${method} ${path} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close', ...(body !== undefined ? [`content-length: ${Buffer.byteLength(body)}`] : []), ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)].join('\r\n'),
    chunks: body !== undefined ? [body] : [], timeoutMs: 5_000,
  })
  const app = await viaApp(sb.app, method, path, body, headers)
  return [asReply(raw), app]
}

function asReply(o: RawOutcome): Reply {
  if (o.kind !== 'reply') return parseReplyText(0, {}, o.kind)
  return o
}

const noSecrets = (r: Reply, extra: string[], logsFrom: number) => {
  for (const s of [...sb.secrets(), ...extra.flatMap(tokenSecrets)]) {
    expect(r.text.includes(s), 'a secret came back').toBe(false)
    expect(sb.logs.slice(logsFrom).some((l) => l.includes(s)), 'a secret was logged').toBe(false)
  }
}

/** Bearer attacks below whose header is malformed rather than a bad token. */
const MALFORMED_BEARERS = new Set(['Bearer empty', 'the bootstrap token with an inner space'])

describe('bearer attacks on every admin endpoint', () => {
  const bearers: [string, () => Promise<string | undefined>][] = [
    ['no Authorization', async () => undefined],
    ['Basic with the bootstrap token', async () => `Basic ${Buffer.from(`admin:${sb.bootstrapToken}`).toString('base64')}`],
    ['Bearer garbage', async () => 'Bearer garbage'],
    ['Bearer empty', async () => 'Bearer '],
    ['the bootstrap token without the scheme', async () => sb.bootstrapToken],
    ['the bootstrap token minus its last character', async () => `Bearer ${sb.bootstrapToken.slice(0, -1)}`],
    ['the bootstrap token plus a character', async () => `Bearer ${sb.bootstrapToken}x`],
    ['the bootstrap token upper-cased', async () => `Bearer ${sb.bootstrapToken.toUpperCase()}`],
    // (Trailing spaces are not an attack: HTTP strips optional whitespace around header values.)
    ['the bootstrap token with an inner space', async () => `Bearer ${sb.bootstrapToken.slice(0, 8)} ${sb.bootstrapToken.slice(8)}`],
    ['a 9000-character bearer', async () => `Bearer ${'a'.repeat(9000)}`],
    ['an IAM token of a non-admin caller', async () => `Bearer ${await sb.token.provisioner()}`],
    ['an expired IAM admin token', async () => `Bearer ${await sb.token.admin({ exp: Math.floor(Date.now() / 1000) - 3600, iat: Math.floor(Date.now() / 1000) - 7200, nbf: Math.floor(Date.now() / 1000) - 7200 })}`],
    ['an admin token for another audience', async () => `Bearer ${await sb.token.admin({ aud: 'https://storage.example.org' })}`],
    // IAM's token exchange output (act): the admin's authority held by another client is not the admin.
    ['an admin token another client obtained by exchange (act)', async () => `Bearer ${await sb.token.admin({ act: { sub: 'some-portal' } })}`],
    ['a forged admin token (attacker key)', async () => {
      const k = await attackerKey()
      return `Bearer ${signRaw(JSON.stringify({ alg: 'RS256', kid: sb.iam.signingKey.kid }), JSON.stringify(provisionerClaims(sb.iam.issuer, BROKER_AUDIENCE, { 'wlcg.groups': ['/ctb-admins'], client_id: 'x' })), k)}`
    }],
    ['an alg none admin token', async () => `Bearer ${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(provisionerClaims(sb.iam.issuer, BROKER_AUDIENCE, { 'wlcg.groups': ['/ctb-admins'] }))).toString('base64url')}.`],
    ['a broker-issued IDTOKEN', async () => {
      const r = await viaApp(sb.app, 'POST', '/token', encodeForm(exchangeForm(await sb.token.provisioner(), 'startd', { host: 'ep-1.cloud-a.example.org' })), { 'content-type': 'application/x-www-form-urlencoded' })
      return `Bearer ${r.json!.access_token as string}`
    }],
  ]
  const cases = ENDPOINTS.flatMap(([m, p, b, t]) => bearers.map(([name, make]) => [`${m} ${p}: ${name}`, m, p, b, t, make] as const))
  it.each(cases)('%s', async (name, method, path, body, type, make) => {
    const authz = await make()
    const revocationsBefore = (await sb.broker.services.revocations.list({ all: true })).length
    const logsFrom = sb.logs.length
    for (const r of await both(method, path, body, { ...(authz !== undefined ? { authorization: authz } : {}), ...(type ? { 'content-type': type } : {}) })) {
      const c = tallyOf('admin-bearer')
      c.sent++
      if (r.status >= 500) c.serverErrors++
      if (r.status < 400) c.served++
      // RFC 6750 §3.1: the Bearer scheme without exactly one token is a malformed request (400 invalid_request).
      const malformed = MALFORMED_BEARERS.has(name.slice(name.indexOf(': ') + 2))
      expect(r.status, r.text).toBe(malformed ? 400 : 401)
      expect(r.headers['www-authenticate']).toMatch(/^Bearer realm=/)
      expect(r.headers['cache-control']).toBe('no-store')
      expect(r.json).toMatchObject({ error: malformed ? 'invalid_request' : 'invalid_token' })
      expect(Object.keys(r.json!).sort()).toEqual(['error', 'error_description'].filter((k) => k in r.json!).sort())
      expect(r.json!.error_description as string).toMatch(DESCRIPTION_CHARS)
      noSecrets(r, authz ? [authz.replace(/^\S+ /, '')] : [], logsFrom)
    }
    expect((await sb.broker.services.revocations.list({ all: true })).length).toBe(revocationsBefore)
  })
})

describe('path variants do not slip past admin authentication', () => {
  it.each(['/v1/audit/', '//v1/audit', '/V1/audit', '/v1/%61udit', '/v1/./audit', '/v1/audit;x', '/v1/x/../audit', '/v1/audit%00', '/v1/revocations/', '/v1//revocations', '/v1/revocations/condor/', '/v1/revocations/%63ondor', '/admin/policy/explain/', '/admin//policy/explain'])('%s', async (path) => {
    for (const r of await both('GET', path, undefined, {})) {
      const c = tallyOf('admin-path-variant')
      c.sent++
      if (r.status >= 500) c.serverErrors++
      if (r.status < 400) c.served++
      expect(r.status, r.text).toBeGreaterThanOrEqual(400)
      expect(r.status, r.text).toBeLessThan(500)
      expect(r.json ?? {}, r.text).not.toHaveProperty('records')
      expect(r.json ?? {}, r.text).not.toHaveProperty('revocations')
      expect(r.text).not.toMatch(/SEC_TOKEN_REVOCATION_EXPR/)
    }
  })
})

describe('hostile parameters from an authenticated admin', () => {
  const admin = () => ({ authorization: `Bearer ${sb.bootstrapToken}` })
  const expectRefusedOrEmpty = (r: Reply) => {
    const c = tallyOf('admin-parameters')
    c.sent++
    if (r.status >= 500) c.serverErrors++
    expect(r.status, r.text).toBeLessThan(500)
    expect(r.headers['cache-control']).toBe('no-store')
    if (r.status >= 400) {
      expect(r.json, r.text).toMatchObject({ error: 'invalid_request' })
      expect(r.json!.error_description as string).toMatch(DESCRIPTION_CHARS)
    }
  }
  it.each([
    'limit=1000000000', 'limit=-1', 'limit=1e3', 'limit=0x10', 'from=yesterday', 'from=99999999999999', 'to=1970-01-01T00:00:00', 'type=token.issued%00',
    'nope=1', 'cursor=' + 'c'.repeat(5000), 'role=startd%0d%0aX-Injected:1', 'caller=%27%20OR%201%3D1%20--', 'caller=' + 'x'.repeat(600), 'site=%C5%BF', 'limit=1&limit=1001', 'decision=allow&decision=deny',
  ])('GET /v1/audit?%s', async (query) => {
    for (const r of await both('GET', `/v1/audit?${query}`, undefined, admin())) {
      expectRefusedOrEmpty(r)
      // A value that matches nothing returns nothing: no injection widens the filter.
      if (r.status === 200 && /caller=|role=|site=/.test(query)) expect(r.json!.records).toEqual([])
    }
  })
  it.each(['format=yaml', 'format=json%0a', 'all=1', 'all=TRUE'])('GET /v1/revocations(/condor)?%s', async (query) => {
    for (const path of ['/v1/revocations', '/v1/revocations/condor']) {
      for (const r of await both('GET', `${path}?${query}`, undefined, admin())) expectRefusedOrEmpty(r)
    }
  })
  it.each([
    ['not JSON', 'application/json', '{"role":'],
    ['form-encoded', 'application/x-www-form-urlencoded', 'role=startd'],
    ['two selectors', 'application/json', JSON.stringify({ role: 'startd', sub: 'x' })],
    ['an unknown field', 'application/json', JSON.stringify({ role: 'startd', admin: true })],
    ['a 1 MiB reason', 'application/json', JSON.stringify({ role: 'startd', reason: 'r'.repeat(1 << 20) })],
    ['a quote in a sub (ClassAd injection)', 'application/json', JSON.stringify({ sub: 'a" || true || "b' })],
    ['a backslash in a jti', 'application/json', JSON.stringify({ jti: 'a\\" || true || \\"' })],
    ['a newline in a site (config injection)', 'application/json', JSON.stringify({ site: 'hpc-b\nSEC_TOKEN_REVOCATION_EXPR = false' })],
    ['a non-ASCII role', 'application/json', JSON.stringify({ role: 'ADVERTI\u017fE_STARTD' })],
    ['an empty sub', 'application/json', JSON.stringify({ sub: '' })],
    ['exp as a string', 'application/json', JSON.stringify({ jti: 'abc', exp: '1' })],
    ['a JSON array', 'application/json', '[]'],
    ['deeply nested JSON', 'application/json', `${'['.repeat(5000)}${']'.repeat(5000)}`],
  ])('POST /v1/revocations with %s is refused and revokes nothing', async (_n, type, body) => {
    const before = (await sb.broker.services.revocations.list({ all: true })).length
    for (const r of await both('POST', '/v1/revocations', body, { ...admin(), 'content-type': type })) {
      expectRefusedOrEmpty(r)
      expect(r.status, r.text).toBe(400)
    }
    expect((await sb.broker.services.revocations.list({ all: true })).length).toBe(before)
    const condor = await both('GET', '/v1/revocations/condor?format=json', undefined, admin())
    for (const r of condor) expect(r.status, r.text).toBe(200)
  })
  it.each([
    ['not JSON', '{'],
    ['a non-ASCII scope (long s)', JSON.stringify({ subject: { iss: 'x', sub: 'y', groups: [] }, role: 'startd', scope: 'condor:/ADVERTI\u017fE_STARTD' })],
    ['an unknown field', JSON.stringify({ subject: { iss: 'x', sub: 'y' }, role: 'startd', sudo: true })],
    ['a huge group list', JSON.stringify({ subject: { iss: 'x', sub: 'y', groups: Array.from({ length: 100_000 }, () => '/g') }, role: 'startd' })],
  ])('POST /admin/policy/explain with %s never allows and never fails', async (_n, body) => {
    for (const r of await both('POST', '/admin/policy/explain', body, { ...admin(), 'content-type': 'application/json' })) {
      expectRefusedOrEmpty(r)
      if (r.status === 200) expect((r.json!.decision as { allow: boolean }).allow).toBe(false)
    }
  })
  it('ADVERTIſE_STARTD is refused for a caller the policy would otherwise allow', async () => {
    const subject = { iss: sb.iam.issuer, sub: 'p', client_id: 'ctb-cloud-a-provisioner', groups: [], scopes: [] }
    const ok = await both('POST', '/admin/policy/explain', JSON.stringify({ subject, role: 'startd', host: 'ep-1.cloud-a.example.org', scope: 'condor:/ADVERTISE_STARTD' }), { ...admin(), 'content-type': 'application/json' })
    for (const r of ok) expect((r.json!.decision as { allow: boolean }).allow, r.text).toBe(true)
    const sneaky = await both('POST', '/admin/policy/explain', JSON.stringify({ subject, role: 'startd', host: 'ep-1.cloud-a.example.org', scope: 'condor:/ADVERTI\u017fE_STARTD' }), { ...admin(), 'content-type': 'application/json' })
    for (const r of sneaky) {
      expectRefusedOrEmpty(r)
      if (r.status === 200) expect((r.json!.decision as { allow: boolean }).allow, r.text).toBe(false)
    }
  })
})

describe('discovery and JWKS ignore parameters and never expose private keys', () => {
  it.each(['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/jwks', '/.well-known/jwks.json'])('%s', async (path) => {
    const plain = await both('GET', path, undefined, {})
    const tampered = await both('GET', `${path}?issuer=https://evil.example&jwks_uri=https://evil.example/k&kid=../../x&alg=none`, undefined, { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' })
    for (const [a, b] of plain.map((p, i) => [p, tampered[i]!] as const)) {
      const c = tallyOf('discovery-jwks')
      c.sent++
      if (b.status >= 500) c.serverErrors++
      expect(b.status).toBeLessThan(500)
      expect(b.status).toBe(a.status)
      expect(b.text).toBe(a.text)
      expect(b.text).not.toMatch(/evil\.example/)
      expect(b.text).not.toMatch(/"d"\s*:|"p"\s*:|"q"\s*:|"k"\s*:/)
      for (const s of sb.secrets()) expect(b.text.includes(s)).toBe(false)
    }
  })
})

it('admin API: nothing was served without valid authentication and nothing answered 5xx', () => {
  for (const [cls, c] of counts) {
    expect(c.serverErrors, `${cls}: 5xx`).toBe(0)
    if (cls !== 'admin-parameters' && cls !== 'discovery-jwks') expect(c.served, `${cls}: served`).toBe(0)
  }
})
