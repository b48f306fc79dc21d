import { createHash } from 'node:crypto'
import type { Hono } from 'hono'
import { beforeEach, describe, expect, it } from 'vitest'
import { createApp, type AppDeps } from '../../src/app.ts'
import { AccessDenied, CredentialGone, InvalidToken, NotFound, SlowDown, TemporarilyUnavailable } from '../../src/errors.ts'
import { bootstrapTokenAuthenticator, type AdminAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { OTHER_METHODS_EXTENSION } from '../../src/http/openapi/document.ts'
import { buildIdTokenClaims, mintIdToken } from '../../src/issuance/idtoken.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { ConsoleSessions } from '../../src/console/sessions.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import type { LimitRefusal } from '../../src/ratelimit/request_limits.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { asStoreOutage } from '../../src/storage/store_outage.ts'
import { TEST_NOW, testDeps } from '../support/broker_deps.ts'

/**
 * Drives every route into the refusals it can give and checks that GET /openapi.json describes each one as
 * observed: the status on that operation, its media type, and the headers the RFCs ask of it. What a
 * refusal must carry comes from the RFCs and docs/errors.md, not from the document:
 * - 401: WWW-Authenticate (RFC 9110 §15.5.2), a Bearer challenge for a bearer token (RFC 6750 §3), whose realm
 *   says what token the route takes (docs/errors.md): "condor-token-broker admin" where an admin token is
 *   required, "condor-token-broker" where a user's IAM token or the credd's IDTOKEN is;
 * - 405: Allow (RFC 9110 §15.5.6);
 * - slow_down (429) and temporarily_unavailable (503), and a console page's 429 or 503: Retry-After in whole
 *   seconds (docs/rate-limits.md, docs/errors.md, docs/console.md; RFC 9110 §10.2.3 delay-seconds);
 * - every OAuth error and every token response: Cache-Control: no-store (RFC 6749 §5.1, docs/errors.md).
 * The other way round, every error status an operation documents is driven here or named in NOT_DRIVEN with
 * the test that does drive it, so a status added to the document without a refusal behind it fails too.
 *
 * The edge is real (createApp, the admin and console session middleware, body limits, query parsing, the
 * error mapper, a store outage mapped by asStoreOutage); what lies behind it (the token exchange, the CA and
 * credential services, IAM) is a stand-in that throws the error its real counterpart throws, since the
 * question here is what reaches the wire, not when the core decides it (test/conformance, test/http/*).
 */

const ADMIN = 'a'.repeat(43)
const TRUST_DOMAIN = 'pool.example.org'
/** An admin bearer the stand-in IAM authenticator cannot decide: IAM is down (as iam_admin.ts answers then). */
const IAM_DOWN = 'iam-down-bearer'
/** An IAM access token the certificate route's caller check admits. */
const IAM_CALLER = 'iam-caller-bearer'
/** The realms of docs/errors.md. */
const ADMIN_REALM = 'condor-token-broker admin'
const CALLER_REALM = 'condor-token-broker'

/** What each case makes the parts behind the routes do. */
interface Faults {
  /** The client address limit refuses (docs/rate-limits.md): the admin API, certificates, registration. */
  blocked: boolean
  /** The audit store is out of reach: a connection refused, mapped as the real store maps it. */
  outage: boolean
  /** The readiness check fails. */
  notReady: boolean
  /** What the stubbed token exchange or service throws once the edge let the request through. */
  core?: Error
}
let faults: Faults
beforeEach(() => { faults = { blocked: false, outage: false, notReady: false } })

const storeDown = () => asStoreOutage(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })) as Error
const throwFault = () => {
  if (faults.outage) throw storeDown()
  if (faults.core) throw faults.core
}

/** A memory store whose revocation writes fail while the store is out of reach. */
class FailingStore extends MemoryStore {
  override async revoke(...args: Parameters<MemoryStore['revoke']>): ReturnType<MemoryStore['revoke']> {
    if (faults.outage) throw storeDown()
    return super.revoke(...args)
  }

  override async lift(...args: Parameters<MemoryStore['lift']>): ReturnType<MemoryStore['lift']> {
    if (faults.outage) throw storeDown()
    return super.lift(...args)
  }
}

const limits = {
  blockedAddress: (): LimitRefusal | undefined => (faults.blocked ? { limit: 'address', description: 'too many refused requests from this address', retryAfter: 7, record: false } : undefined),
  noteRefused: () => {},
}

/** Stands in for the IAM admin authenticator: asks IAM (not local), which is down for IAM_DOWN. */
const iamAdmin: AdminAuthenticator = {
  async authenticate(bearer) {
    if (bearer === IAM_DOWN) throw new TemporarilyUnavailable('IAM could not be reached or answered badly (introspection); try again later')
    return null
  },
}

/** IAM sign-in for the console: starts unless IAM is down (faults.outage); the callback's `code` is the access token IAM hands back. */
const signIn = {
  async start() {
    if (faults.outage) throw new TemporarilyUnavailable('IAM discovery failed recently; try again later')
    return { url: 'https://iam.example.org/authorize', codeVerifier: 'v', nonce: 'n', state: 's' }
  },
  async finish(params: URLSearchParams) { return { accessToken: params.get('code') ?? '' } },
}

/** A console session, as signing in makes one: its cookie and its CSRF token. */
interface ConsoleLogin { cookie: string; csrf: string }
type SessionKind = 'admin' | 'not admin' | 'IAM down'
const SESSION_BEARER: Record<SessionKind, string> = { admin: ADMIN, 'not admin': 'b'.repeat(43), 'IAM down': IAM_DOWN }

function refusalApp(withSignIn = true): { app: Hono; creddToken: string; revocationId: () => Promise<number>; session: (kind: SessionKind) => Promise<ConsoleLogin> } {
  const store = new FailingStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }), knownIssuers: () => new Set(),
  })
  const base = testDeps({}, { CTB_TRUST_DOMAIN: TRUST_DOMAIN })
  const subject = { iss: 'https://iam.example.org/', sub: 'alice', groups: [], scopes: [], exp: TEST_NOW + 3600, claims: {} }
  const deps: AppDeps = {
    ...base,
    readiness: async () => (faults.notReady ? { audit: 'the last commit failed' } : { audit: 'ok' }),
    exchange: async (readForm) => {
      await readForm()
      throwFault()
      throw new Error('no token in this test')
    },
    admin: {
      audit: store, revocations, limits,
      authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(ADMIN).digest()), iamAdmin],
      policy: { current: {} as never },
    },
    metrics: { page: async () => ({ contentType: 'text/plain; version=0.0.4; charset=utf-8', body: '' }), auth: 'admin' },
    certificates: {
      service: {
        caPem: '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n',
        crl: async () => '',
        admitCaller: async () => throwFault(),
        refuse: async (err: unknown) => err,
        check: async () => { throw new Error('no dry run in this test') },
        issue: async () => { throwFault(); throw new Error('no certificate in this test') },
        revoke: async () => { throwFault(); throw new Error('no revocation in this test') },
      } as never,
      verifyCaller: async (bearer) => {
        if (bearer !== IAM_CALLER) throw new InvalidToken('the bearer is not a valid IAM access token', { presented: true })
        return subject as never
      },
      limits,
    },
    console: { keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store, ...(withSignIn ? { signIn } : {}) },
    credentials: {
      service: {
        register: async (readRequest: () => Promise<unknown>) => {
          if (faults.blocked) throw new SlowDown('too many refused requests from this address', 7)
          await readRequest()
          throwFault()
          throw new Error('no registration in this test')
        },
        list: async () => { throwFault(); return [] },
        revoke: async () => { throwFault(); return false },
      } as never,
      jobTokens: { token: async () => { throwFault(); throw new Error('no job token in this test') } } as never,
      credd: { idtokenKey: () => base.keys.idtoken, trustDomain: TRUST_DOMAIN, revocations, clock: fixedClock(TEST_NOW) },
      close: async () => {}, unstoredRefreshTokens: () => ({ memory: 0, disk: 0 }),
    },
  }
  const creddToken = mintIdToken(buildIdTokenClaims({
    trustDomain: TRUST_DOMAIN, subject: `credd-ap1@aps.${TRUST_DOMAIN}`, authz: ['DAEMON'], lifetimeSeconds: 3600, now: TEST_NOW,
    extra: { ctb_role: 'credd' },
  }), base.keys.idtoken)
  const app = createApp(deps)
  const revocationId = async () => {
    const r = await app.request('/v1/revocations', { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'mallory' }) })
    expect(r.status).toBe(201)
    return ((await r.json()) as { revocation: { id: number } }).revocation.id
  }
  const sessions = new ConsoleSessions(store)
  const session = async (kind: SessionKind): Promise<ConsoleLogin> => {
    const now = Math.floor(Date.now() / 1000)
    const { id, session: s } = await sessions.create({ bearer: SESSION_BEARER[kind], principal: kind, expiresAt: now + 600 }, now)
    return { cookie: `__Host-ctb-console=${id}`, csrf: s.csrf }
  }
  return { app, creddToken, revocationId, session }
}

interface DocResponse { content?: Record<string, unknown>; headers?: Record<string, { schema?: { const?: unknown; type?: string; pattern?: string } }> }
interface DocOperation { operationId: string; responses: Record<string, DocResponse> }
type Doc = { paths: Record<string, Record<string, DocOperation | undefined>> }

/** The operation that answers `method` at `path` (a template): its own, or the path's catch-all. */
function operationOf(doc: Doc, method: string, path: string): DocOperation {
  const item = doc.paths[path]
  expect(item, `${path} is in the document`).toBeDefined()
  const op = item![method.toLowerCase()] ?? item![OTHER_METHODS_EXTENSION]
  expect(op, `${method} ${path} is in the document`).toBeDefined()
  return op!
}

/** Headers a refusal must carry, from the RFCs and docs/errors.md (see the top of this file). */
function requiredHeaders(status: number, error: string | undefined, tokenResponse: boolean, consolePage: boolean): string[] {
  const out: string[] = []
  if (status === 401) out.push('www-authenticate')
  if (status === 405) out.push('allow')
  // A console page's 429 and 503 too: the same cause and wait as the API's (docs/console.md).
  if (error === 'slow_down' || error === 'temporarily_unavailable' || (consolePage && (status === 429 || status === 503))) out.push('retry-after')
  if (error !== undefined || tokenResponse) out.push('cache-control')
  return out
}

/** Headers whose presence the document must state wherever they are sent. */
const TRACKED = ['www-authenticate', 'allow', 'retry-after', 'cache-control', 'pragma', 'location'] as const

interface Case {
  /** `METHOD /template` of the operation. */
  op: string
  /** What is done to it. */
  how: string
  url?: string
  init?: RequestInit
  setup?: (f: Faults) => void
  status: number
  /** The OAuth `error` expected in a JSON body (RFC 6749 §5.2, RFC 6750 §3.1, docs/errors.md). */
  error?: string
  /** A token endpoint's answer (RFC 6749 §5.1): never cached. */
  token?: boolean
  /** A console session to make the request in: `init` is then built with its cookie and CSRF token. */
  session?: SessionKind
  sessionInit?: (s: ConsoleLogin) => RequestInit
  /** Run against the app whose console has no IAM sign-in. */
  noSignIn?: boolean
  /** For a 401: the realm of its Bearer challenge (docs/errors.md). */
  realm?: string
}

const bearer = (token: string, extra: Record<string, string> = {}): RequestInit => ({ headers: { authorization: `Bearer ${token}`, ...extra } })
const json = (method: string, token: string | undefined, body: string): RequestInit => ({
  method, body, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
})
const form = 'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=x&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token'
const tokenPost = (extra: Record<string, string> = {}): RequestInit => ({ method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded', ...extra } })

/** The refusals every admin route gives before it looks at the request (middleware/admin_auth.ts). */
function adminRefusals(op: string, url: string, init: RequestInit = {}): Case[] {
  const method = op.split(' ')[0]!
  const withAuth = (token?: string): RequestInit => ({ ...init, method, headers: { ...(init.headers as Record<string, string> | undefined), ...(token ? { authorization: `Bearer ${token}` } : {}) } })
  return [
    { op, how: 'no bearer token', url, init: withAuth(), status: 401, error: 'invalid_token', realm: ADMIN_REALM },
    { op, how: 'a bearer that is no admin token', url, init: withAuth('b'.repeat(43)), status: 401, error: 'invalid_token', realm: ADMIN_REALM },
    { op, how: 'Bearer without a token (RFC 6750 §3.1)', url, init: { ...withAuth(), headers: { ...(init.headers as Record<string, string> | undefined), authorization: 'Bearer' } }, status: 400, error: 'invalid_request', realm: ADMIN_REALM },
    { op, how: 'from a blocked address', url, init: withAuth('b'.repeat(43)), setup: (f) => { f.blocked = true }, status: 429, error: 'slow_down' },
    { op, how: 'IAM down for an IAM admin token', url, init: withAuth(IAM_DOWN), status: 503, error: 'temporarily_unavailable' },
  ]
}

function cases(creddToken: string): Case[] {
  const jobToken = '/v1/credentials/alice/scitokens/token'
  return [
    { op: 'GET /readyz', how: 'a failing check', setup: (f) => { f.notReady = true }, status: 503 },

    ...adminRefusals('GET /metrics', '/metrics'),

    { op: 'POST /token', how: 'a content-coded body (RFC 9110 §8.4)', init: tokenPost({ 'content-encoding': 'gzip' }), status: 400, error: 'invalid_request', token: true },
    { op: 'POST /token', how: 'a body that is not a form', init: { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }, status: 400, error: 'invalid_request', token: true },
    { op: 'POST /token', how: 'IAM denies the narrowing exchange', init: tokenPost(), setup: (f) => { f.core = new AccessDenied('IAM denied the exchange') }, status: 403, error: 'access_denied', token: true },
    { op: 'POST /token', how: 'a rate limit used up', init: tokenPost(), setup: (f) => { f.core = new SlowDown('the caller limit is used up', 3) }, status: 429, error: 'slow_down', token: true },
    { op: 'POST /token', how: 'the audit store out of reach', init: tokenPost(), setup: (f) => { f.outage = true }, status: 503, error: 'temporarily_unavailable', token: true },

    ...adminRefusals('GET /v1/audit', '/v1/audit'),
    { op: 'GET /v1/audit', how: 'a repeated parameter', url: '/v1/audit?type=token.issued&type=token.denied', init: bearer(ADMIN), status: 400, error: 'invalid_request' },
    { op: 'GET /v1/audit', how: 'an unknown parameter', url: '/v1/audit?nope=1', init: bearer(ADMIN), status: 400, error: 'invalid_request' },
    ...adminRefusals('GET /v1/audit/summary', '/v1/audit/summary'),
    { op: 'GET /v1/audit/summary', how: 'a repeated parameter', url: '/v1/audit/summary?bucket=day&bucket=hour', init: bearer(ADMIN), status: 400, error: 'invalid_request' },

    ...adminRefusals('POST /v1/revocations', '/v1/revocations', json('POST', undefined, '{"sub":"mallory"}')),
    { op: 'POST /v1/revocations', how: 'two selectors', init: json('POST', ADMIN, '{"sub":"a","role":"pilot"}'), status: 400, error: 'invalid_request' },
    { op: 'POST /v1/revocations', how: 'the audit store out of reach', init: json('POST', ADMIN, '{"sub":"mallory"}'), setup: (f) => { f.outage = true }, status: 503, error: 'temporarily_unavailable' },
    ...adminRefusals('GET /v1/revocations', '/v1/revocations'),
    { op: 'GET /v1/revocations', how: 'a bad value', url: '/v1/revocations?all=maybe', init: bearer(ADMIN), status: 400, error: 'invalid_request' },
    { op: 'GET /v1/revocations', how: 'a repeated parameter', url: '/v1/revocations?all=true&all=false', init: bearer(ADMIN), status: 400, error: 'invalid_request' },
    ...adminRefusals('DELETE /v1/revocations/{id}', '/v1/revocations/1'),
    { op: 'DELETE /v1/revocations/{id}', how: 'no such revocation', url: '/v1/revocations/99', init: { method: 'DELETE', ...bearer(ADMIN) }, status: 404, error: 'invalid_request' },
    { op: 'DELETE /v1/revocations/{id}', how: 'a body that is not JSON', url: '/v1/revocations/1', init: json('DELETE', ADMIN, 'nope'), status: 400, error: 'invalid_request' },
    { op: 'DELETE /v1/revocations/{id}', how: 'the audit store out of reach', url: 'LIFT', init: { method: 'DELETE', ...bearer(ADMIN) }, setup: (f) => { f.outage = true }, status: 503, error: 'temporarily_unavailable' },
    ...adminRefusals('GET /v1/revocations/condor', '/v1/revocations/condor'),
    { op: 'GET /v1/revocations/condor', how: 'a bad format', url: '/v1/revocations/condor?format=xml', init: bearer(ADMIN), status: 400, error: 'invalid_request' },
    { op: 'GET /v1/revocations/condor', how: 'a repeated parameter', url: '/v1/revocations/condor?format=json&format=json', init: bearer(ADMIN), status: 400, error: 'invalid_request' },
    ...adminRefusals('GET /v1/pilots', '/v1/pilots'),
    { op: 'GET /v1/pilots', how: 'a bad site', url: '/v1/pilots?site=..', init: bearer(ADMIN), status: 400, error: 'invalid_request' },
    { op: 'GET /v1/pilots', how: 'a repeated parameter', url: '/v1/pilots?site=a&site=b', init: bearer(ADMIN), status: 400, error: 'invalid_request' },
    ...adminRefusals('POST /admin/policy/explain', '/admin/policy/explain', json('POST', undefined, '{}')),
    { op: 'POST /admin/policy/explain', how: 'a bad body', init: json('POST', ADMIN, '{}'), status: 400, error: 'invalid_request' },

    { op: 'POST /v1/certificates', how: 'no bearer token', init: json('POST', undefined, '{}'), status: 401, error: 'invalid_token', realm: CALLER_REALM },
    { op: 'POST /v1/certificates', how: 'two bearer tokens (RFC 6750 §3.1)', init: json('POST', 'a b', '{}'), status: 400, error: 'invalid_request', realm: CALLER_REALM },
    { op: 'POST /v1/certificates', how: 'a bearer IAM does not vouch for', init: json('POST', 'b'.repeat(43), '{}'), status: 401, error: 'invalid_token', realm: CALLER_REALM },
    { op: 'POST /v1/certificates', how: 'from a blocked address', init: json('POST', IAM_CALLER, '{}'), setup: (f) => { f.blocked = true }, status: 429, error: 'slow_down' },
    { op: 'POST /v1/certificates', how: 'a bad body', init: json('POST', IAM_CALLER, '{}'), status: 400, error: 'invalid_request' },
    { op: 'POST /v1/certificates', how: 'a caller the policy refuses', init: json('POST', IAM_CALLER, '{}'), setup: (f) => { f.core = new AccessDenied('no certificate grant') }, status: 403, error: 'access_denied' },
    { op: 'POST /v1/certificates', how: 'the audit store out of reach', init: json('POST', IAM_CALLER, '{"csr":"x","role":"host","dns":["a.example.org"]}'), setup: (f) => { f.outage = true }, status: 503, error: 'temporarily_unavailable' },
    ...adminRefusals('DELETE /v1/certificates/{serial}', '/v1/certificates/01'),
    { op: 'DELETE /v1/certificates/{serial}', how: 'a bad body', url: '/v1/certificates/01', init: json('DELETE', ADMIN, '{"nope":1}'), status: 400, error: 'invalid_request' },
    { op: 'DELETE /v1/certificates/{serial}', how: 'no such certificate', url: '/v1/certificates/01', init: { method: 'DELETE', ...bearer(ADMIN) }, setup: (f) => { f.core = new NotFound('no certificate with this serial') }, status: 404, error: 'invalid_request' },
    { op: 'DELETE /v1/certificates/{serial}', how: 'the audit store out of reach', url: '/v1/certificates/01', init: { method: 'DELETE', ...bearer(ADMIN) }, setup: (f) => { f.outage = true }, status: 503, error: 'temporarily_unavailable' },

    { op: 'POST /v1/credentials', how: 'no bearer token', init: json('POST', undefined, '{}'), status: 401, error: 'invalid_token', realm: CALLER_REALM },
    { op: 'POST /v1/credentials', how: 'two bearer tokens (RFC 6750 §3.1)', init: json('POST', 'a b', '{"provider":"scitokens"}'), status: 400, error: 'invalid_request', realm: CALLER_REALM },
    { op: 'POST /v1/credentials', how: 'not JSON', init: { method: 'POST', body: 'x', headers: { authorization: 'Bearer u', 'content-type': 'text/plain' } }, status: 400, error: 'invalid_request' },
    { op: 'POST /v1/credentials', how: 'from a blocked address', init: json('POST', 'u', '{}'), setup: (f) => { f.blocked = true }, status: 429, error: 'slow_down', token: true },
    { op: 'POST /v1/credentials', how: 'a user the policy refuses', init: json('POST', 'u', '{"provider":"scitokens"}'), setup: (f) => { f.core = new AccessDenied('no job credential grant') }, status: 403, error: 'access_denied', token: true },
    { op: 'POST /v1/credentials', how: 'the audit store out of reach', init: json('POST', 'u', '{"provider":"scitokens"}'), setup: (f) => { f.outage = true }, status: 503, error: 'temporarily_unavailable', token: true },
    ...adminRefusals('GET /v1/credentials', '/v1/credentials'),
    { op: 'GET /v1/credentials/{user}/{provider}/token', how: 'no bearer token', url: jobToken, status: 401, error: 'invalid_token', token: true, realm: CALLER_REALM },
    { op: 'GET /v1/credentials/{user}/{provider}/token', how: 'Bearer without a token (RFC 6750 §3.1)', url: jobToken, init: { headers: { authorization: 'Bearer' } }, status: 400, error: 'invalid_request', token: true, realm: CALLER_REALM },
    { op: 'GET /v1/credentials/{user}/{provider}/token', how: 'a bearer that is no broker IDTOKEN', url: jobToken, init: bearer('x.y.z'), status: 401, error: 'invalid_token', token: true, realm: CALLER_REALM },
    { op: 'GET /v1/credentials/{user}/{provider}/token', how: 'a repeated parameter', url: `${jobToken}?scopes=a&scopes=b`, init: bearer(creddToken), status: 400, error: 'invalid_request', token: true },
    { op: 'GET /v1/credentials/{user}/{provider}/token', how: 'a bad minimum_seconds', url: `${jobToken}?minimum_seconds=soon`, init: bearer(creddToken), status: 400, error: 'invalid_request', token: true },
    { op: 'GET /v1/credentials/{user}/{provider}/token', how: 'a credential gone for good', url: jobToken, init: bearer(creddToken), setup: (f) => { f.core = new CredentialGone('revoked', 'this credential has been revoked') }, status: 403, error: 'access_denied', token: true },
    { op: 'GET /v1/credentials/{user}/{provider}/token', how: 'the audit store out of reach', url: jobToken, init: bearer(creddToken), setup: (f) => { f.outage = true }, status: 503, error: 'temporarily_unavailable', token: true },
    ...adminRefusals('DELETE /v1/credentials/{user}/{provider}', '/v1/credentials/alice/scitokens'),
    { op: 'DELETE /v1/credentials/{user}/{provider}', how: 'a bad name', url: '/v1/credentials/al%20ice/scitokens', init: { method: 'DELETE', ...bearer(ADMIN) }, status: 400, error: 'invalid_request' },
    { op: 'DELETE /v1/credentials/{user}/{provider}', how: 'no such credential', url: '/v1/credentials/alice/scitokens', init: { method: 'DELETE', ...bearer(ADMIN) }, status: 404, error: 'invalid_request' },
    { op: 'DELETE /v1/credentials/{user}/{provider}', how: 'the audit store out of reach', url: '/v1/credentials/alice/scitokens', init: { method: 'DELETE', ...bearer(ADMIN) }, setup: (f) => { f.outage = true }, status: 503, error: 'temporarily_unavailable' },

    ...consoleCases(),
  ]
}

const FORM = 'application/x-www-form-urlencoded'
// As a browser posts our forms: with the broker's Origin (testDeps' issuer), without which every console POST is refused.
const post = (body: string, headers: Record<string, string> = {}): RequestInit => ({ method: 'POST', body, headers: { 'content-type': FORM, origin: 'https://broker.example.org', ...headers } })
const inSession = (body: (csrf: string) => string) => (s: ConsoleLogin): RequestInit => post(body(s.csrf), { cookie: s.cookie })
const BIG_FORM = `x=${'x'.repeat(65 * 1024)}`
/** A sign-in in progress, as the login cookie holds it (routes/console.ts), for state `s`. */
const pendingLogin = () => `__Host-ctb-console-login=${Buffer.from(JSON.stringify({ state: 's', codeVerifier: 'v', nonce: 'n', expiresAt: Math.floor(Date.now() / 1000) + 300 })).toString('base64url')}`
const callback = (): RequestInit => ({ headers: { cookie: pendingLogin() } })

function consoleCases(): Case[] {
  const signedInPages: Array<[string, string]> = [['GET /console', '/console'], ['GET /console/search', '/console/search'], ['GET /console/records/{seq}', '/console/records/1'],
    ['GET /console/pilots', '/console/pilots'], ['GET /console/credentials', '/console/credentials'], ['GET /console/act', '/console/act']]
  const signedInForms: Array<[string, string]> = [['POST /console/verify', 'x=1'], ['POST /console/credentials/revoke', 'user=alice&provider=scitokens'],
    ['POST /console/act/revoke', 'kind=sub&value=mallory'], ['POST /console/act/explain', 'role=pilot']]
  const cookieOnly = (s: ConsoleLogin): RequestInit => ({ headers: { cookie: s.cookie } })
  return [
    ...signedInPages.flatMap(([op, url]): Case[] => [
      { op, how: 'no session', url, status: 303 },
      { op, how: 'a session whose bearer is no longer an admin\'s', url, session: 'not admin', sessionInit: cookieOnly, status: 403 },
      { op, how: 'a session whose IAM is down', url, session: 'IAM down', sessionInit: cookieOnly, status: 503 },
    ]),
    { op: 'GET /console/search', how: 'a bad time', url: '/console/search?from=soon', session: 'admin', sessionInit: cookieOnly, status: 400 },
    { op: 'GET /console/records/{seq}', how: 'no such record', url: '/console/records/999', session: 'admin', sessionInit: cookieOnly, status: 404 },
    ...signedInForms.flatMap(([op, body]): Case[] => [
      { op, how: 'no session', init: post(`${body}&csrf=x`), status: 403 },
      { op, how: 'a bad CSRF token', session: 'admin', sessionInit: inSession(() => `${body}&csrf=forged`), status: 403 },
      { op, how: 'a form larger than 64 KiB', init: post(BIG_FORM), status: 413 },
      { op, how: 'a multipart body that does not parse', session: 'admin', sessionInit: (s) => ({ method: 'POST', body: 'x', headers: { cookie: s.cookie, 'content-type': 'multipart/form-data' } }), status: 400, error: 'invalid_request' },
      { op, how: 'a session whose IAM is down', session: 'IAM down', sessionInit: inSession((csrf) => `${body}&csrf=${csrf}`), status: 503 },
    ]),
    { op: 'POST /console/credentials/revoke', how: 'a bad user name', session: 'admin', sessionInit: inSession((csrf) => `user=al%20ice&provider=scitokens&confirm=yes&csrf=${csrf}`), status: 400 },
    { op: 'POST /console/credentials/revoke', how: 'no such credential', session: 'admin', sessionInit: inSession((csrf) => `user=alice&provider=scitokens&confirm=yes&csrf=${csrf}`), status: 404 },
    { op: 'POST /console/credentials/revoke', how: 'the audit store out of reach', session: 'admin', sessionInit: inSession((csrf) => `user=alice&provider=scitokens&confirm=yes&csrf=${csrf}`), setup: (f) => { f.outage = true }, status: 503 },
    { op: 'POST /console/act/revoke', how: 'no such kind', session: 'admin', sessionInit: inSession((csrf) => `kind=nope&value=x&csrf=${csrf}`), status: 400 },
    { op: 'POST /console/act/revoke', how: 'the audit store out of reach', session: 'admin', sessionInit: inSession((csrf) => `kind=sub&value=mallory&confirm=yes&csrf=${csrf}`), setup: (f) => { f.outage = true }, status: 503 },
    { op: 'POST /console/act/explain', how: 'no subject', session: 'admin', sessionInit: inSession((csrf) => `role=pilot&csrf=${csrf}`), status: 400 },

    { op: 'POST /console/sign-out', how: 'a bad CSRF token', session: 'admin', sessionInit: inSession(() => 'csrf=forged'), status: 403 },
    { op: 'POST /console/sign-out', how: 'a form larger than 64 KiB', init: post(BIG_FORM), status: 413 },
    { op: 'POST /console/sign-out', how: 'a multipart body that does not parse', session: 'admin', sessionInit: (s) => ({ method: 'POST', body: 'x', headers: { cookie: s.cookie, 'content-type': 'multipart/form-data' } }), status: 400, error: 'invalid_request' },

    { op: 'POST /console/sign-in/token', how: 'no CSRF cookie', init: post('token=x&csrf=y'), status: 403 },
    { op: 'POST /console/sign-in/token', how: 'a multipart body that does not parse', init: { method: 'POST', body: 'x', headers: { 'content-type': 'multipart/form-data' } }, status: 400, error: 'invalid_request' },
    { op: 'POST /console/sign-in/token', how: 'a form larger than 64 KiB', init: post(BIG_FORM), status: 413 },
    { op: 'POST /console/sign-in/token', how: 'no admin token, from a blocked address', init: post(`token=${'b'.repeat(43)}&csrf=p`, { cookie: '__Host-ctb-console-pre=p' }), setup: (f) => { f.blocked = true }, status: 429 },
    { op: 'POST /console/sign-in/token', how: 'IAM down for an IAM admin token', init: post(`token=${IAM_DOWN}&csrf=p`, { cookie: '__Host-ctb-console-pre=p' }), status: 503 },

    { op: 'GET /console/login', how: 'IAM down', setup: (f) => { f.outage = true }, status: 503 },
    { op: 'GET /console/login', how: 'no IAM sign-in configured', noSignIn: true, status: 404 },
    { op: 'GET /console/callback', how: 'no IAM sign-in configured', noSignIn: true, status: 404 },
    { op: 'GET /console/callback', how: 'no sign-in in progress', url: '/console/callback?state=s&code=x', status: 400 },
    { op: 'GET /console/callback', how: 'from a blocked address', url: '/console/callback?state=s&code=x', init: callback(), setup: (f) => { f.blocked = true }, status: 429 },
    { op: 'GET /console/callback', how: 'IAM\'s token is no admin\'s', url: `/console/callback?state=s&code=${'b'.repeat(43)}`, init: callback(), status: 403 },
    { op: 'GET /console/callback', how: 'IAM down for the admin check', url: `/console/callback?state=s&code=${IAM_DOWN}`, init: callback(), status: 503 },
  ]
}

/**
 * At every path, a method it does not answer (PATCH, which no route takes, and PUT as an admin would send
 * it): 405 with Allow (RFC 9110 §15.5.6), JSON invalid_request, or a console page. The paths come from the
 * document, so each one's 405 is driven; test/http/method_not_allowed.test.ts tries every method.
 */
function otherMethods(doc: Doc): Case[] {
  const concrete = (template: string) => template.replace(/\{(\w+)\}/g, (_, name: string) => ({ id: '1', seq: '1', serial: '01', user: 'alice', provider: 'scitokens' }[name] ?? 'x'))
  return Object.keys(doc.paths).flatMap((path): Case[] => {
    const api = !(path === '/console' || path.startsWith('/console/'))
    return [
      { op: `ALL ${path}`, how: 'PATCH', url: concrete(path), init: { method: 'PATCH' }, status: 405, ...(api ? { error: 'invalid_request' } : {}) },
      { op: `ALL ${path}`, how: 'PUT with the admin bearer token', url: concrete(path), init: { method: 'PUT', ...bearer(ADMIN) }, status: 405, ...(api ? { error: 'invalid_request' } : {}) },
    ]
  })
}

/**
 * Documented error statuses no case above drives, each with the test that does. Kept exact: a status that
 * gains a case here must leave this list, and one the document stops listing must leave it too.
 */
const NOT_DRIVEN: Record<string, string> = {
  // Needs the SQLite writer thread to die under a real store; its body is held to the published schema there too.
  'GET /healthz 503': 'test/integration/audit_outage_sqlite.test.ts, test/http/openapi.test.ts',
}

describe('GET /openapi.json describes every refusal the routes really give', () => {
  it('each observed status, media type and header is documented on its operation', async () => {
    const { app, creddToken, revocationId, session } = refusalApp()
    const { app: noSignInApp } = refusalApp(false)
    const doc = await (await app.request('/openapi.json')).json() as Doc
    const driven = new Set<string>()
    const all = [...cases(creddToken), ...otherMethods(doc)]
    expect(all.length).toBeGreaterThan(60)
    expect(all.filter((c) => c.status === 405).length).toBeGreaterThan(60)
    const problems: string[] = []
    const check = (ok: boolean, what: string) => { if (!ok) problems.push(what) }
    for (const c of all) {
      const [method, path] = c.op.split(' ') as [string, string]
      const label = `${c.op} (${c.how})`
      faults = { blocked: false, outage: false, notReady: false }
      const url = c.url === 'LIFT' ? `/v1/revocations/${await revocationId()}` : c.url ?? path
      c.setup?.(faults)
      const init = c.session && c.sessionInit ? c.sessionInit(await session(c.session)) : c.init
      const res = await (c.noSignIn ? noSignInApp : app).request(url, { method: method === 'ALL' ? 'GET' : method, ...init })
      driven.add(`${method} ${path} ${res.status}`)
      if (res.status !== c.status) { problems.push(`${label}: answered ${res.status}, expected ${c.status}`); continue }
      const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim()
      if (c.error !== undefined) {
        const body = mediaType === 'application/json' ? (await res.clone().json()) as { error?: string } : {}
        check(body.error === c.error, `${label}: error ${body.error}, expected ${c.error}`)
      }
      // What the RFCs ask, as the broker sends it.
      const required = requiredHeaders(c.status, c.error, c.token === true, path.startsWith('/console'))
      for (const h of required) check(res.headers.get(h) !== null, `${label}: sends no ${h}`)
      if (required.includes('retry-after')) check(/^\d+$/.test(res.headers.get('retry-after') ?? ''), `${label}: Retry-After is not delay-seconds`)
      // RFC 6750 §3.1: a malformed bearer request (400 invalid_request) is challenged too, naming its error.
      if (c.error === 'invalid_request' && c.realm !== undefined) check(res.headers.get('www-authenticate')?.startsWith(`Bearer realm="${c.realm}", error="invalid_request", `) === true, `${label}: challenge ${res.headers.get('www-authenticate')}, expected realm ${c.realm} and error="invalid_request"`)
      if (c.error === 'invalid_token') {
        const challenge = res.headers.get('www-authenticate') ?? ''
        check(c.realm !== undefined, `${label}: the case names no realm`)
        check(challenge === `Bearer realm="${c.realm}"` || challenge.startsWith(`Bearer realm="${c.realm}", `), `${label}: challenge ${challenge}, expected realm ${c.realm}`)
      }
      if (c.error !== undefined || c.token) check(res.headers.get('cache-control') === 'no-store', `${label}: Cache-Control is not no-store`)

      // And the document says so, on this operation, for this status.
      const op = operationOf(doc, method === 'ALL' ? 'ALL' : method, path)
      const documented = op.responses[String(c.status)]
      if (!documented) { problems.push(`${label}: ${c.status} not documented on ${op.operationId}`); continue }
      const types = Object.keys(documented.content ?? {}).map((t) => t.split(';')[0])
      if (mediaType !== '') check(types.includes(mediaType), `${label}: ${mediaType} not documented on ${op.operationId} ${c.status} (${types.join(', ')})`)
      const documentedHeaders = Object.fromEntries(Object.entries(documented.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]))
      for (const h of TRACKED) {
        const sent = res.headers.get(h)
        if (sent === null) continue
        const d = documentedHeaders[h]
        if (!d) { problems.push(`${label}: ${h} not documented on ${op.operationId} ${c.status}`); continue }
        const fixed = d.schema?.const
        if (fixed !== undefined) check(sent === fixed, `${label}: ${h} is ${sent}, documented ${String(fixed)}`)
        const pattern = d.schema?.pattern
        if (pattern !== undefined) check(new RegExp(pattern, 'u').test(sent), `${label}: ${h} is ${sent}, documented as matching ${pattern}`)
      }
    }
    expect(problems.join("\n")).toBe("")

    // The other way round: every documented error status of every operation is driven above or named in NOT_DRIVEN.
    const undriven: string[] = []
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [key, op] of Object.entries(item)) {
        if (!op) continue
        const method = key === OTHER_METHODS_EXTENSION ? 'ALL' : key.toUpperCase()
        for (const status of Object.keys(op.responses)) {
          if (Number(status) < 400 || status === '500') continue
          const name = `${method} ${path} ${status}`
          if (!driven.has(name) && NOT_DRIVEN[name] === undefined) undriven.push(name)
        }
      }
    }
    expect(undriven, 'documented, but no case drives it (add a case, or a NOT_DRIVEN entry naming the test that does)').toEqual([])
    expect(Object.keys(NOT_DRIVEN).filter((n) => driven.has(n)), 'NOT_DRIVEN entries that a case now drives').toEqual([])
    const documentedStatuses = Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).flatMap(([key, op]) =>
      Object.keys(op?.responses ?? {}).map((status) => `${key === OTHER_METHODS_EXTENSION ? 'ALL' : key.toUpperCase()} ${path} ${status}`)))
    expect(Object.keys(NOT_DRIVEN).filter((n) => !documentedStatuses.includes(n)), 'NOT_DRIVEN entries the document does not list').toEqual([])
  })
})
