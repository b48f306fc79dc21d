/**
 * The real POST /token app for conformance tests, built the way src/services.ts builds it (real IAM
 * verifier, policy engine, issuance, audit store, revocation generations), minus the development IAM:
 * IAM is the msw stand-in of test/support/iam.ts, reached through `globalThis.fetch`.
 *
 * Every conformance test runs twice (vitest.config.ts): through `app.request` (hono, no socket), and with
 * CTB_CONFORMANCE_TRANSPORT=socket through the very request listener `serve` installs (the POST /token
 * fast path ahead of hono, src/server.ts) on a loopback socket, reached with undici's own fetch (which msw
 * does not intercept).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Hono } from 'hono'
import type { SetupServer } from 'msw/node'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Agent, fetch as undiciFetch } from 'undici'
import { afterAll, afterEach, expect } from 'vitest'
import { createApp } from '../../../src/app.ts'
import type { AuditEvent, AuditLog } from '../../../src/audit/audit_log.ts'
import { RefusalTally } from '../../../src/audit/refusal_tally.ts'
import { loadConfig, maxTokenLifetime, type Config } from '../../../src/config.ts'
import { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE } from '../../../src/contract/token_exchange.ts'
import type { Exchange } from '../../../src/http/routes/token.ts'
import { createIamAdapter } from '../../../src/iam/create_iam_adapter.ts'
import { exchangeToken } from '../../../src/issuance/exchange.ts'
import { exchangeDepsFrom } from '../../../src/issuance/exchange_deps.ts'
import { openRequestLimits } from '../../../src/ratelimit/open_request_limits.ts'
import { ensureAndLoadKeys } from '../../../src/keys/signing_keys.ts'
import { PilotRegistry } from '../../../src/issuance/pilot_registry.ts'
import { BrokerMetrics } from '../../../src/metrics/broker_metrics.ts'
import { observeExchange, observeIamFetch } from '../../../src/metrics/observe_pipeline.ts'
import { systemClock, type Clock } from '../../../src/lib/clock.ts'
import { silentLogger } from '../../../src/lib/logger.ts'
import { policyContextFromConfig } from '../../../src/policy/context.ts'
import { PolicyHolder } from '../../../src/policy/policy_holder.ts'
import { revocationLabels } from '../../../src/policy/revocation_labels.ts'
import { RevocationService } from '../../../src/revocation/revocation_service.ts'
import { brokerRequestListener } from '../../../src/server.ts'
import { GroupCommitter } from '../../../src/storage/group_commit.ts'
import { MemoryStore } from '../../../src/storage/memory_store.ts'
import type { PilotRenewal, RenewalRefusal, RenewalRefusalReasons } from '../../../src/storage/pilot_renewals.ts'
import { asStoreOutage } from '../../../src/storage/store_outage.ts'
import { iamConfigFor, mswFetch, secretReader, TestIam, useMswIam } from '../../support/iam.ts'

export const GRANT_TYPE = GRANT_TYPE_TOKEN_EXCHANGE
export const ACCESS_TOKEN_TYPE = TOKEN_TYPE.accessToken
export const JWT_TYPE = TOKEN_TYPE.jwt
export const IDTOKEN_TYPE = TOKEN_TYPE.idtoken

export const TRUST_DOMAIN = 'pool.example.org'
export const BROKER_ISSUER = 'https://broker.example.org'
/** The `aud` the broker requires of IAM subject tokens (the broker's client registration at IAM). */
export const BROKER_AUDIENCE = 'https://broker.example.org'
/** Audiences the submit-user grant allows (SciTokens, narrowed IAM tokens). */
export const AP1 = 'condor://ap1.example.org:9618'
export const AP2 = 'condor://ap2.example.org:9618'
export const STORAGE = 'https://storage.example.org/data'

/**
 * A small federation: one monitoring robot (IDTOKEN only, READ) and submit users in /htc/users
 * (IDTOKEN, SciToken or narrowed IAM token; two scopes; three audiences; no "up to", so anything
 * wider is refused, never trimmed).
 */
const POLICY = `version: 1
rules:
  - id: monitoring
    match:
      issuer: \${IAM_ISSUER}
      client_id: [ctb-monitoring]
    grants:
      - role: monitoring
        identity: monitor@{trust_domain}
        token_kinds: [idtoken]
        authz: [READ]
        lifetime: { default: 1h, max: 1d }
  - id: users
    match:
      issuer: \${IAM_ISSUER}
      groups: [/htc/users]
    grants:
      - role: submit-user
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [idtoken, scitoken, access_token]
        default_token_kind: idtoken
        authz: [READ, WRITE]
        scopes: [compute.read, compute.create]
        profile: wlcg
        audiences: ["${AP1}", "${AP2}", "${STORAGE}"]
        lifetime: { default: 20m, max: 6h }
  - id: hpc-pilots
    match:
      issuer: \${IAM_ISSUER}
      client_id: [ctb-pilot-factory]
    grants:
      - role: pilot
        identity: pilot-{site}-{slurm_job_id}@pilots.{trust_domain}
        sites: [hpc-a]
        params:
          slurm_job_id: ["*"]
        token_kinds: [idtoken]
        authz: [READ, ADVERTISE_STARTD, ADVERTISE_MASTER]
        lifetime: { default: 1h, max: 2h }
        pilot:
          max_count: 4
          enrolment_lifetime: { default: 1h, max: 1d }
          token_lifetime: 30m
      - role: pilot-ccb
        identity: pilot-{site}-{slurm_job_id}@pilots.{trust_domain}
        sites: [hpc-t]
        params:
          slurm_job_id: ["*"]
        token_kinds: [idtoken]
        authz: [READ, ADVERTISE_STARTD, ADVERTISE_MASTER, DAEMON]
        lifetime: { default: 1h, max: 2h }
        up_to: true
        pilot:
          max_count: 2
          enrolment_lifetime: { default: 1h, max: 1d }
          tunneled: true
          max_restarts: 0
`

/** Which way requests reach the broker: `app.request`, or `serve`'s listener on a socket. */
export type Transport = 'hono' | 'socket'
export const TRANSPORT: Transport = process.env.CTB_CONFORMANCE_TRANSPORT === 'socket' ? 'socket' : 'hono'

/**
 * How the audit log behaves: `ok` records in the MemoryStore; `failing` rejects at once, as a store whose
 * database went read-only does; `slow-failing` rejects after `slowMs` (a commit that takes a while, then
 * fails on I/O); both are outages, and reject with what the real store makes of them (asStoreOutage, as
 * ChainedStore does). `broken` rejects with a TypeError: a bug in the write path, no outage. `full` is a
 * real bounded queue (GroupCommitter) whose commits never finish and which is kept full, so every record is
 * refused as overloaded.
 */
export type AuditMode = 'ok' | 'failing' | 'slow-failing' | 'broken' | 'full'

/** An error as node:sqlite raises it: SQLite's result code in `errcode` (https://www.sqlite.org/rescode.html). */
function sqliteError(errcode: number, message: string): Error {
  return Object.assign(new Error(message), { code: 'ERR_SQLITE_ERROR', errcode, errstr: message })
}

/** The audit log the pipeline writes to: the MemoryStore unless `mode` says otherwise (fail-closed tests). */
export interface SwitchableAudit extends AuditLog {
  mode: AuditMode
  /** Sugar for mode 'failing' / 'ok'. */
  failing: boolean
  slowMs: number
  /** Records attempted while not `ok` (they were refused). */
  refused: number
}

export interface TokenApp {
  app: Hono
  iam: TestIam
  msw: SetupServer
  store: MemoryStore
  /** The revocation service the pipeline reads generations and caller/identity blocks from. */
  revocations: RevocationService
  audit: SwitchableAudit
  /** Refusals without a verified caller, counted until `flush()` writes their aggregate record. */
  refusals: RefusalTally
  transport: Transport
  config: Config
  /** The policy in force, and the file it reads (reload() after rewriting it, as SIGHUP does). */
  policy: PolicyHolder
  policyFile: string
  /** The metrics GET /metrics shows, wired as services.ts wires them. */
  metrics: BrokerMetrics
  /** POST /token with a form-encoded body; array values become repeated parameters. */
  post(form: Record<string, string | string[]>, headers?: Record<string, string>): Promise<Response>
  /** Any request to the app. */
  request(path: string, init: RequestInit): Promise<Response>
  /** An IAM access token of a /htc/users member the policy allows. */
  userToken(claims?: Record<string, unknown>, options?: Parameters<TestIam['mint']>[1]): Promise<string>
  /** A complete, valid RFC 8693 form for a submit-user token, overridable field by field. */
  form(subjectToken: string, extra?: Record<string, string | string[] | undefined>): Record<string, string | string[]>
}

/**
 * Builds the app once for the calling test file and registers msw (`onUnhandledFrame: 'error'`) and
 * clean-up hooks. Call at the top level of a test file. `clock` replaces the system clock. `env` adds CTB_* settings; with any CTB_RATE_LIMITS_*
 * among them the exchange gets the rate limits serve builds (without, none: the suite sends many refusals).
 */
/** `policy`: the test's own edit of the policy file's text (POLICY), for a case the shared policy does not hold. */
export async function useTokenApp(options: { env?: NodeJS.ProcessEnv; clock?: Clock; policy?: (text: string) => string } = {}): Promise<TokenApp> {
  const iam = await TestIam.create({ issuer: 'https://iam.test.example/' })
  const msw = useMswIam(iam)

  const dir = mkdtempSync(join(tmpdir(), 'ctb-conformance-'))
  const policyDir = join(dir, 'policies')
  mkdirSync(policyDir)
  writeFileSync(join(policyDir, 'federation.yaml'), options.policy ? options.policy(POLICY) : POLICY)
  const loaded = loadConfig({ env: { CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: TRUST_DOMAIN, CTB_ISSUER: BROKER_ISSUER, ...options.env } })
  const config: Config = {
    ...loaded,
    policy_dir: policyDir,
    iam: iamConfigFor(iam, {}, { audience: BROKER_AUDIENCE }),
  }

  // A test that needs time to pass (a credential expiring) brings its own clock; IAM tokens are still
  // verified when they are presented, so such a test moves it forward only after its IAM calls.
  const clock = options.clock ?? systemClock
  const { keys } = ensureAndLoadKeys(config, clock.now())
  const store = new MemoryStore()
  // A queue whose commits never finish: with room for one waiting write, keeping one there refuses the rest.
  const stalled = new GroupCommitter<AuditEvent>(() => new Promise<void>(() => {}), { maxPending: 1 })
  const audit: SwitchableAudit = {
    mode: 'ok',
    get failing() { return this.mode === 'failing' },
    set failing(on: boolean) { this.mode = on ? 'failing' : 'ok' },
    slowMs: 50,
    refused: 0,
    record(event: AuditEvent) {
      if (this.mode === 'ok') return store.record(event)
      this.refused++
      // SQLITE_READONLY (8) and SQLITE_IOERR_FSYNC (1034).
      if (this.mode === 'failing') return Promise.reject(asStoreOutage(sqliteError(8, 'attempt to write a readonly database')))
      if (this.mode === 'slow-failing') {
        return new Promise<void>((_, reject) => setTimeout(() => reject(asStoreOutage(sqliteError(1034, 'disk I/O error'))), this.slowMs))
      }
      if (this.mode === 'broken') return Promise.reject(new TypeError("Cannot read properties of undefined (reading 'seq')"))
      stalled.submit(event).catch(() => undefined)
      return stalled.submit(event)
    },
  }
  // Not start()ed: no SIGHUP handler or directory watch in tests.
  const policy = new PolicyHolder({ dir: policyDir, context: policyContextFromConfig(config, iam.issuer), log: silentLogger })
  const pilotRegistry = new PilotRegistry(store)
  const metrics = new BrokerMetrics({
    clock, policy: () => policy.current, keyRotationDays: config.metrics.key_rotation_days,
    sources: {
      commits: () => store.commitStats(),
      batches: (listener) => store.observeBatches(listener),
      revocations: () => revocations.inForce(),
      keys: () => [{ key: 'scitoken', created: keys.scitoken.created }],
      livePilots: (now) => pilotRegistry.liveBySite(now),
    },
  })
  const adapter = await createIamAdapter(config.iam, { log: silentLogger, clock, fetch: mswFetch, readFile: secretReader(iam), wrapFetch: (f) => observeIamFetch(f, metrics) })
  const revocations = new RevocationService({
    store, clock, log: silentLogger,
    maxTokenLifetime: maxTokenLifetime(config),
    refreshSeconds: config.revocation.refresh_seconds,
    knownLabels: () => revocationLabels(policy.current),
  })
  await revocations.refresh()

  const refusals = new RefusalTally({ audit, clock, log: silentLogger })
  // Pilot redemptions commit through the same switch, so fail-closed tests cover them too.
  const pilotStore = {
    record: (e: AuditEvent) => audit.record(e),
    async redeemPilotSlot(credential: string, limit: number, issued: AuditEvent, refused: AuditEvent) {
      if (audit.mode !== 'ok') { await audit.record(issued); throw new Error('audit store unavailable') }
      return store.redeemPilotSlot(credential, limit, issued, refused)
    },
    async renewPilotToken(renewal: PilotRenewal, renewed: AuditEvent, refused: RenewalRefusal, reasons: RenewalRefusalReasons) {
      if (audit.mode !== 'ok') { await audit.record(renewed); throw new Error('audit store unavailable') }
      return store.renewPilotToken(renewal, renewed, refused, reasons)
    },
    query: store.query.bind(store),
  }
  const limited = Object.keys(options.env ?? {}).some((k) => k.startsWith('CTB_RATE_LIMITS_'))
  const limits = limited ? (await openRequestLimits(config, { log: silentLogger })).limits : undefined
  const exchangeDeps = exchangeDepsFrom({
    config, keys, audit, clock, iam: adapter, policy, generations: revocations, blocks: revocations, refusals, log: silentLogger,
    ...(limits ? { limits } : {}), pilots: { store: pilotStore, revocations, registry: pilotRegistry }, observer: metrics,
  })
  const exchange: Exchange = observeExchange((readForm, ctx) => exchangeToken(readForm, ctx, exchangeDeps), metrics)
  const app = createApp({
    config, keys, log: silentLogger, readiness: async () => ({ keys: 'ok' }), exchange,
    metrics: { page: () => metrics.render(), auth: 'none' },
  })

  let server: Server | undefined
  let base = ''
  const agent = new Agent({ connections: 64 })
  if (TRANSPORT === 'socket') {
    // overrideGlobalObjects: false is the one difference from serve: hono's node adapter would otherwise
    // swap the global Response for its own, and msw (which mocks IAM in this process) recognises a
    // network-error response by the global Response class. The token fast path uses neither.
    server = createServer(brokerRequestListener(app, exchange, silentLogger, { hostname: '127.0.0.1', overrideGlobalObjects: false }))
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  afterEach(() => {
    audit.mode = 'ok'
    iam.faults = { discovery: 'ok', jwks: 'ok', token: 'ok', introspection: 'ok' }
  })
  afterAll(async () => {
    if (server) {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server!.close(() => resolve()))
    }
    await agent.close()
    adapter.close()
    policy.close()
    revocations.stop()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const request = TRANSPORT === 'socket'
    ? async (path: string, init: RequestInit) => await undiciFetch(`${base}${path}`, { ...init, dispatcher: agent } as never) as unknown as Response
    : async (path: string, init: RequestInit) => app.request(path, init)
  return {
    app, iam, msw, store, revocations, audit, refusals, transport: TRANSPORT, config, metrics, request,
    policy, policyFile: join(policyDir, 'federation.yaml'),
    post(form, headers = {}) {
      return request('/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: encodeForm(form) })
    },
    userToken(claims = {}, options = {}) {
      return iam.mint({ aud: BROKER_AUDIENCE, 'wlcg.groups': ['/htc/users'], preferred_username: 'alice', ...claims }, options)
    },
    form(subjectToken, extra = {}) {
      const f: Record<string, string | string[] | undefined> = {
        grant_type: GRANT_TYPE, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE, role: 'submit-user', ...extra,
      }
      return Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined)) as Record<string, string | string[]>
    },
  }
}

/** application/x-www-form-urlencoded; array values become repeated parameters, in order. */
export function encodeForm(form: Record<string, string | string[]>): string {
  const body = new URLSearchParams()
  for (const [k, v] of Object.entries(form)) for (const x of Array.isArray(v) ? v : [v]) body.append(k, x)
  return body.toString()
}

export interface OAuthErrorBody {
  error: string
  error_description?: string
}

/**
 * Asserts an RFC 6749 §5.2 error response (JSON, no-store) with the given status and code, and that
 * nothing token-like leaked: no access_token, and none of `secrets` in the body. Returns the body.
 */
export async function expectOAuthError(res: Response, status: number, error: string, secrets: string[] = []): Promise<OAuthErrorBody> {
  const text = await res.text()
  expect(res.status, text).toBe(status)
  expect(res.headers.get('content-type')).toMatch(/^application\/json\b/)
  expect(res.headers.get('cache-control')).toBe('no-store')
  const body = JSON.parse(text) as OAuthErrorBody & Record<string, unknown>
  expect(body.error).toBe(error)
  expect(body).not.toHaveProperty('access_token')
  for (const s of secrets) {
    // A JWT's signature (or any tail of a token) must never come back, whole or in part.
    expect(text).not.toContain(s.slice(-24))
  }
  return body
}

/** Decodes a JWT payload without verifying it (the issuance tests verify signatures elsewhere). */
export function payloadOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
}
