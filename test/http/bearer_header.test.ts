// RFC 6750 §3: a protected resource answers a request without a usable access token with WWW-Authenticate:
// Bearer, whose realm the server chooses (docs/errors.md: the realm of the token the route takes).
// RFC 6750 §3.1: "If the request lacks any authentication information (e.g., the client was unaware that
// authentication is necessary or attempted using an unsupported authentication method), the resource server
// SHOULD NOT include an error code or other error information." invalid_request: the request "is otherwise
// malformed. The resource server SHOULD respond with the HTTP 400 (Bad Request) status code."
// invalid_token: the access token provided is "expired, revoked, malformed, or invalid" — 401.
// RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token. RFC 9110 §11.1: the scheme is case-insensitive.
// The JSON body always carries an `error` (docs/errors.md): invalid_token for a 401, invalid_request for a 400.
import { createHash } from 'node:crypto'
import type { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { createApp, type AppDeps } from '../../src/app.ts'
import { InvalidToken } from '../../src/errors.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { TEST_NOW, testDeps } from '../support/broker_deps.ts'

const ADMIN = 'a'.repeat(43)
const SCRAPE = 's'.repeat(43)
const ADMIN_REALM = 'condor-token-broker admin'
const CALLER_REALM = 'condor-token-broker'
const METRICS_REALM = 'condor-token-broker metrics'

/** Every part that takes a bearer token mounted; what lies behind the token check refuses any token (a stand-in for IAM). */
function bearerApp(metricsAuth: NonNullable<AppDeps['metrics']>['auth'], withAdmin = true): Hono {
  const store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }), knownIssuers: () => new Set(),
  })
  const base = testDeps()
  const refused = () => { throw new InvalidToken('the IAM access token was refused', { presented: true }) }
  return createApp({
    ...base,
    ...(withAdmin ? { admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(ADMIN).digest())], policy: { current: {} as never } } } : {}),
    metrics: { page: async () => ({ contentType: 'text/plain; version=0.0.4; charset=utf-8', body: '' }), auth: metricsAuth },
    certificates: { service: { admitCaller: async () => {} } as never, verifyCaller: async () => refused() },
    credentials: {
      service: { register: async (read: () => Promise<unknown>) => { await read(); refused() } } as never,
      jobTokens: {} as never,
      credd: { idtokenKey: () => base.keys.idtoken, trustDomain: 'pool.example.org', revocations, clock: fixedClock(TEST_NOW) },
      close: async () => {}, unstoredRefreshTokens: () => ({ memory: 0, disk: 0 }),
    },
  })
}

const adminApp = bearerApp('admin')
const scrapeApp = bearerApp({ bearerSha256: createHash('sha256').update(SCRAPE).digest() })
const noAdminApp = bearerApp('none', false)

const json = (method: string, body: string) => ({ method, body, headers: { 'content-type': 'application/json' } })

/** Every route that reads an Authorization header, with the realm its challenge names (docs/errors.md). */
const ROUTES: Array<{ name: string; app: Hono; url: string; init?: { method: string; body?: string; headers?: Record<string, string> }; realm: string }> = [
  { name: 'GET /v1/audit', app: adminApp, url: '/v1/audit', realm: ADMIN_REALM },
  { name: 'GET /v1/audit/summary', app: adminApp, url: '/v1/audit/summary', realm: ADMIN_REALM },
  { name: 'GET /v1/revocations', app: adminApp, url: '/v1/revocations', realm: ADMIN_REALM },
  { name: 'POST /v1/revocations', app: adminApp, url: '/v1/revocations', init: json('POST', '{"sub":"mallory"}'), realm: ADMIN_REALM },
  { name: 'DELETE /v1/revocations/{id}', app: adminApp, url: '/v1/revocations/1', init: { method: 'DELETE' }, realm: ADMIN_REALM },
  { name: 'GET /v1/revocations/condor', app: adminApp, url: '/v1/revocations/condor', realm: ADMIN_REALM },
  { name: 'GET /v1/pilots', app: adminApp, url: '/v1/pilots', realm: ADMIN_REALM },
  { name: 'POST /admin/policy/explain', app: adminApp, url: '/admin/policy/explain', init: json('POST', '{}'), realm: ADMIN_REALM },
  { name: 'GET /v1/credentials', app: adminApp, url: '/v1/credentials', realm: ADMIN_REALM },
  { name: 'DELETE /v1/credentials/{user}/{provider}', app: adminApp, url: '/v1/credentials/alice/scitokens', init: { method: 'DELETE' }, realm: ADMIN_REALM },
  { name: 'GET /v1/credentials without the admin API', app: noAdminApp, url: '/v1/credentials', realm: ADMIN_REALM },
  { name: 'DELETE /v1/certificates/{serial}', app: adminApp, url: '/v1/certificates/01', init: { method: 'DELETE' }, realm: ADMIN_REALM },
  { name: 'GET /metrics (metrics.auth admin)', app: adminApp, url: '/metrics', realm: ADMIN_REALM },
  { name: 'GET /metrics (metrics.auth bearer)', app: scrapeApp, url: '/metrics', realm: METRICS_REALM },
  { name: 'POST /v1/certificates', app: adminApp, url: '/v1/certificates', init: json('POST', '{"csr":"x","role":"host","dns":["a.example.org"]}'), realm: CALLER_REALM },
  { name: 'POST /v1/credentials', app: adminApp, url: '/v1/credentials', init: json('POST', '{"provider":"scitokens"}'), realm: CALLER_REALM },
  { name: 'GET /v1/credentials/{user}/{provider}/token', app: adminApp, url: '/v1/credentials/alice/scitokens/token', realm: CALLER_REALM },
]

type Expected = 'no credentials' | 'malformed' | 'bad token'
/** The Authorization header sent (undefined: none) and what RFC 6750 makes of it. */
const INPUTS: Array<[string, string | undefined, Expected]> = [
  ['no Authorization header', undefined, 'no credentials'],
  ['an empty Authorization header', '', 'no credentials'],
  ['Basic credentials', 'Basic dXNlcjpwYXNz', 'no credentials'],
  ['Digest credentials', 'Digest username="u", realm="r", nonce="n", uri="/", response="x"', 'no credentials'],
  ['a scheme that only begins with Bearer', 'Bearerxyz', 'no credentials'],
  ['Bearer without a token', 'Bearer', 'malformed'],
  ['bearer (lowercase) without a token', 'bearer', 'malformed'],
  ['Bearer with two tokens', 'Bearer abc def', 'malformed'],
  ['Bearer with a comma-separated pair', 'Bearer abc, Basic dXNlcjpwYXNz', 'malformed'],
  // RFC 6750 §2.1 and RFC 9110 §11.4 separate scheme and token by SP only: a tab there is the Bearer scheme
  // written wrongly, not some other scheme named "Bearer<TAB>…".
  ['Bearer and a tab before a token', 'Bearer\tnot-our-token', 'malformed'],
  ['Bearer, a space and a tab before a token', 'Bearer \tnot-our-token', 'malformed'],
  ['Bearer with a token that is not ours', 'Bearer not-our-token', 'bad token'],
  ['bearer (lowercase) with a token that is not ours', 'bearer not-our-token', 'bad token'],
  ['BEARER (uppercase) with a token that is not ours', 'BEARER not-our-token', 'bad token'],
  ['Bearer and several spaces before a token that is not ours (1*SP)', 'Bearer   not-our-token', 'bad token'],
]

describe('an Authorization header that is no usable bearer token is answered alike on every route (RFC 6750 §3)', () => {
  const table = ROUTES.flatMap((r) => INPUTS.map(([how, header, expected]) => [r.name, how, r, header, expected] as const))
  it.each(table)('%s, %s', async (_name, _how, route, header, expected) => {
    const headers = { ...route.init?.headers, ...(header !== undefined ? { authorization: header } : {}) }
    const res = await route.app.request(route.url, { ...route.init, headers })
    const challenge = res.headers.get('www-authenticate')
    const body = await res.json() as { error: string; error_description?: string }
    expect(res.headers.get('cache-control')).toBe('no-store')
    if (expected === 'no credentials') {
      expect(res.status).toBe(401)
      expect(challenge).toBe(`Bearer realm="${route.realm}"`)
      expect(body.error).toBe('invalid_token')
    } else if (expected === 'malformed') {
      expect(res.status).toBe(400)
      expect(challenge).toMatch(new RegExp(`^Bearer realm="${route.realm}", error="invalid_request", error_description="[^"]+"$`))
      expect(body.error).toBe('invalid_request')
    } else {
      expect(res.status).toBe(401)
      expect(challenge).toMatch(new RegExp(`^Bearer realm="${route.realm}", error="invalid_token", error_description="[^"]+"$`))
      expect(body.error).toBe('invalid_token')
    }
  })
})
