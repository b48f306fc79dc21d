/**
 * The broker's job-credential routes wired as serve wires them (src/credentials/build_credentials.ts):
 * real IAM adapter against the msw IAM of test/support/iam.ts, real policy, revocations, SQLite store
 * (inline writer) in a temp dir, rate limits from the config, and an admin bootstrap token. No sockets:
 * `app.request`.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Hono } from 'hono'
import type { SetupServer } from 'msw/node'
import { afterAll } from 'vitest'
import { createApp } from '../../src/app.ts'
import { loadConfig, maxTokenLifetime, type Config } from '../../src/config.ts'
import { buildCredentials, type CredentialServices } from '../../src/credentials/build_credentials.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { createVaultApp } from '../../src/http/vault_app.ts'
import { createIamAdapter, type IamAdapter } from '../../src/iam/create_iam_adapter.ts'
import { buildIdTokenClaims, mintIdToken } from '../../src/issuance/idtoken.ts'
import { ensureAndLoadKeys, type SigningKeys } from '../../src/keys/signing_keys.ts'
import { systemClock, type Clock } from '../../src/lib/clock.ts'
import { silentLogger, type Logger } from '../../src/lib/logger.ts'
import { BrokerMetrics } from '../../src/metrics/broker_metrics.ts'
import { policyContextFromConfig } from '../../src/policy/context.ts'
import { PolicyHolder } from '../../src/policy/policy_holder.ts'
import { revocationLabels } from '../../src/policy/revocation_labels.ts'
import { openRequestLimits } from '../../src/ratelimit/open_request_limits.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { iamConfigFor, mswFetch, secretReader, TestIam, useMswIam } from './iam.ts'

export const TRUST_DOMAIN = 'pool.example.org'
export const BROKER = 'https://broker.example.org'
export const SE = 'https://se.example.org'
export const VAULT_PUBLIC = 'https://broker.example.org:8200'

const POLICY = `version: 1
rules:
  - id: job-credentials
    match:
      issuer: \${IAM_ISSUER}
      groups: [/htc/users]
    grants:
      - role: job-iam
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [access_token]
        scopes: [compute.read, compute.create, "storage.read:/store/user", "storage.create:/store/user"]
        audiences: ["${SE}"]
        lifetime: { default: 1h, max: 6h }
        fetched_by: { roles: [credd], vault_reads: true }
      - role: job-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/user", "storage.modify:/store/user"]
        audiences: ["${SE}"]
        lifetime: { default: 20m, max: 1h }
        fetched_by: { roles: [credd], vault_reads: true }
      - role: job-east-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/user"]
        audiences: ["${SE}"]
        lifetime: { default: 20m, max: 1h }
        fetched_by: { roles: [credd], sites: [ap-east] }
  - id: access-point
    match:
      issuer: \${IAM_ISSUER}
      client_id: [ctb-ap]
    grants:
      - role: credd
        identity: credd-{host_short}@aps.{trust_domain}
        token_kinds: [idtoken]
        authz: [DAEMON]
        hosts: ["ap*.example.org"]
        lifetime: { default: 1d, max: 7d }
`

const CONFIG = `credentials:
  enabled: true
  minimum_seconds: 300
  providers:
    - { name: cms, kind: iam, role: job-iam }
    - { name: se-storage, kind: scitoken, role: job-storage }
    - { name: east-storage, kind: scitoken, role: job-east-storage }
  vault:
    enabled: true
    public_url: ${VAULT_PUBLIC}
`

export interface CredentialsApp {
  app: Hono
  vault: Hono
  iam: TestIam
  /** The msw server standing in for IAM: `msw.use(...)` overrides a handler for one test. */
  msw: SetupServer
  store: SqliteStore
  dbFile: string
  config: Config
  keys: SigningKeys
  credentials: CredentialServices
  /** The broker's metrics, observing the credentials' audit records as serve wires them. */
  metrics: BrokerMetrics
  revocations: RevocationService
  adminToken: string
  credentialKeyHex: string
  /** A /htc/users member's IAM token, as the WLCG discovery would find it. */
  userToken(claims?: Record<string, unknown>): Promise<string>
  /** A broker-issued IDTOKEN with the given role (default credd) and, if given, `ctb_site`. */
  creddToken(o?: { role?: string; site?: string; exp?: number; trustDomain?: string }): string
  register(token: string, body: Record<string, unknown>): Promise<Response>
  jobToken(user: string, provider: string, bearer: string, query?: string): Promise<Response>
  /**
   * Starts `request` and holds `user`'s rotated refresh token at the store (IAM has already rotated it)
   * while `during` runs: a race with whatever `during` does to the row. Resolves with the request's answer.
   */
  whileRotationWaits(user: string, request: () => Promise<Response>, during: () => Promise<void>): Promise<Response>
  /** Token-endpoint requests IAM saw with this grant type (counted at the msw handler). */
  iamRequests(grantType: 'refresh_token' | 'urn:ietf:params:oauth:grant-type:token-exchange'): URLSearchParams[]
  /** The same broker restarted with another credential key (same database, IAM, policy). */
  withCredentialKey(hex: string): Hono
  /** The same broker started again (same database, data directory, key, IAM, policy), with its credential services to close. */
  restartCredentials(log?: Logger): { app: Hono; credentials: CredentialServices }
  /** The same broker restarted without its own client at the IAM (same database, key, policy). */
  withoutBrokerClient(): Promise<Hono>
  /** The policy in force (setPolicy reloads it). */
  policy: PolicyHolder
  /** Rewrites the policy file (the shipped test policy edited by `edit`; none restores it) and reloads it. */
  setPolicy(edit?: (policy: string) => string): void
}

/**
 * `console`: also serve the web console (bootstrap-token sign-in only). `clock`: the broker's and the
 * msw IAM's time (default the system clock), for tests that move time instead of sleeping. `log`: the
 * IAM adapter's and the credentials' logger (default silent), for tests that read what is logged.
 */
export async function useCredentialsApp(o: { console?: boolean; clock?: Clock; log?: Logger; configEdit?: (yaml: string) => string } = {}): Promise<CredentialsApp> {
  const log = o.log ?? silentLogger
  const iam = await TestIam.create({ issuer: 'https://iam.test.example/' })
  const clock = o.clock ?? systemClock
  iam.now = () => clock.now()
  const msw = useMswIam(iam)
  const dir = mkdtempSync(join(tmpdir(), 'ctb-credentials-'))
  const policyDir = join(dir, 'policies')
  mkdirSync(policyDir)
  writeFileSync(join(policyDir, 'jobs.yaml'), POLICY)
  writeFileSync(join(dir, 'broker.yaml'), (o.configEdit ?? ((y) => y))(CONFIG))
  const loaded = loadConfig({ file: join(dir, 'broker.yaml'), env: { CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: TRUST_DOMAIN, CTB_ISSUER: BROKER } })
  const config: Config = { ...loaded, policy_dir: policyDir, iam: iamConfigFor(iam, {}, { audience: BROKER }) }
  const { keys } = ensureAndLoadKeys(config, clock.now())
  const dbFile = join(dir, 'data', 'audit.db')
  const store = new SqliteStore({ file: dbFile, writer: 'inline', synchronous: 'normal' })
  const adapter: IamAdapter = await createIamAdapter(config.iam, { log, clock, fetch: mswFetch, readFile: secretReader(iam) })
  const policy = new PolicyHolder({ dir: policyDir, context: policyContextFromConfig(config, iam.issuer), log: silentLogger })
  const revocations = new RevocationService({
    store, clock, log: silentLogger, maxTokenLifetime: maxTokenLifetime(config), refreshSeconds: config.revocation.refresh_seconds,
    knownLabels: () => revocationLabels(policy.current),
  })
  await revocations.refresh()
  const credentialKeyHex = randomBytes(32).toString('hex')
  const metrics = new BrokerMetrics({ clock, policy: () => policy.current, process: false })
  const limits = await openRequestLimits(config, { log })
  const credentials = buildCredentials({
    config, keys, store, iam: adapter, policy, revocations, clock, log, production: true,
    env: { CONDOR_TOKEN_BROKER_CREDENTIAL_KEY: credentialKeyHex }, observer: metrics, limits: limits.limits,
  })
  const adminToken = randomBytes(32).toString('base64url')
  const app = createApp({
    config, keys, log, readiness: async () => ({ keys: 'ok' }),
    admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(adminToken).digest())] },
    credentials,
    ...(o.console ? { console: { keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store } } : {}),
  })
  const vault = createVaultApp({ store, jobTokens: credentials.jobTokens, log, limits: limits.limits })
  const adapters: IamAdapter[] = [adapter]
  afterAll(async () => {
    await credentials.close()
    await limits.close()
    for (const a of adapters) a.close()
    policy.close()
    revocations.stop()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    app, vault, iam, msw, store, dbFile, config, keys, credentials, metrics, revocations, adminToken, credentialKeyHex, policy,
    userToken: (claims = {}) => iam.mint({ aud: BROKER, 'wlcg.groups': ['/htc/users'], preferred_username: 'alice', scope: 'openid compute.read compute.create offline_access', ...claims }),
    creddToken(o = {}) {
      const now = clock.now()
      const claims = buildIdTokenClaims({
        trustDomain: o.trustDomain ?? TRUST_DOMAIN, subject: `credd-ap1@aps.${TRUST_DOMAIN}`, authz: ['DAEMON'],
        lifetimeSeconds: 3600, now: o.exp !== undefined ? o.exp - 3600 : now,
        extra: { ctb_role: o.role ?? 'credd', ctb_gen: revocations.generationOf(o.role ?? 'credd'), ...(o.site !== undefined ? { ctb_site: o.site } : {}) },
      })
      return mintIdToken(claims, keys.idtoken)
    },
    register: async (token, body) => app.request('/v1/credentials', {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
    }),
    jobToken: async (user, provider, bearer, query = '') => app.request(`/v1/credentials/${user}/${provider}/token${query}`, { headers: { authorization: `Bearer ${bearer}` } }),
    async whileRotationWaits(user, request, during) {
      let atStore!: () => void
      const arrived = new Promise<void>((resolve) => { atStore = resolve })
      let release!: () => void
      const gate = new Promise<void>((resolve) => { release = resolve })
      const write = store.writeCredential.bind(store)
      store.writeCredential = async (w, e) => {
        if (w.action === 'rotate' && w.user === user) { atStore(); await gate }
        return write(w, e)
      }
      const answer = request()
      try {
        await arrived
        await during()
      } finally {
        release()
        store.writeCredential = write
      }
      return answer
    },
    iamRequests: (grantType) => iam.tokenRequests.filter((r) => r.get('grant_type') === grantType),
    setPolicy(edit = (p) => p) {
      writeFileSync(join(policyDir, 'jobs.yaml'), edit(POLICY))
      const r = policy.reload()
      if (!r.ok) throw new Error(`test policy refused: ${JSON.stringify(r)}`)
    },
    withCredentialKey(hex) {
      const other = buildCredentials({ config, keys, store, iam: adapter, policy, revocations, clock, log: silentLogger, production: true, env: { CONDOR_TOKEN_BROKER_CREDENTIAL_KEY: hex } })
      return createApp({ config, keys, log: silentLogger, readiness: async () => ({ keys: 'ok' }), credentials: other })
    },
    restartCredentials(restartLog = silentLogger) {
      const credentials = buildCredentials({ config, keys, store, iam: adapter, policy, revocations, clock, log: restartLog, production: true, env: { CONDOR_TOKEN_BROKER_CREDENTIAL_KEY: credentialKeyHex } })
      return { app: createApp({ config, keys, log: silentLogger, readiness: async () => ({ keys: 'ok' }), credentials }), credentials }
    },
    async withoutBrokerClient() {
      const clientless = await createIamAdapter(iamConfigFor(iam, {}, { audience: BROKER, client: undefined }), { log, clock, fetch: mswFetch, readFile: secretReader(iam) })
      adapters.push(clientless)
      const other = buildCredentials({ config, keys, store, iam: clientless, policy, revocations, clock, log, production: true, env: { CONDOR_TOKEN_BROKER_CREDENTIAL_KEY: credentialKeyHex } })
      return createApp({ config, keys, log, readiness: async () => ({ keys: 'ok' }), credentials: other })
    },
  }
}
