import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { AuditEvent } from './audit/audit_log.ts'
import { RefusalTally } from './audit/refusal_tally.ts'
import { startRetention } from './audit/retention.ts'
import { certificateRetentionFloor } from './ca/certificate_retention.ts'
import { auditAnchorFile, caDir, maxTokenLifetime, type Config } from './config.ts'
import type { CertificateService } from './ca/certificate_service.ts'
import { poolCaFiles } from './ca/pool_ca_files.ts'
import { delegationRefusal } from './iam/delegation.ts'
import type { VerifiedSubject } from './iam/subject.ts'
import { InvalidToken } from './errors.ts'
import { devIamTrustedIssuer, devIamBrokerSettings, withConsoleSignIn } from './dev_iam/broker_settings.ts'
import { defaultDevIamConfig } from './dev_iam/dev_iam_config.ts'
import { oidcSignIn, type ConsoleSignIn } from './console/oidc_sign_in.ts'
import type { ConsoleSessionStore } from './console/session_store.ts'
import { keyStatus, type KeyStatus } from './keys/key_status.ts'
import { markDevelopmentKey } from './keys/development_key_mark.ts'
import { KeyStore } from './keys/key_store.ts'
import { DEV_IAM_PATHS, devIamIssuer } from './dev_iam/dev_iam_paths.ts'
import type { RunningDevIam } from './dev_iam/start_dev_iam.ts'
import { BrokerError, ConfigurationError, OperatorError } from './errors.ts'
import type { AdminAuthenticator } from './http/middleware/admin_auth.ts'
import { bootstrapTokenAuthenticator, loadBootstrapToken } from './http/middleware/admin_auth.ts'
import type { IamStatusCheck, ReadinessCheck } from './http/routes/health.ts'
import type { Exchange } from './http/routes/token.ts'
import { IamReachability } from './iam/iam_reachability.ts'
import { createIamAdapter, type IamAdapter } from './iam/create_iam_adapter.ts'
import { IamConfigSchema, type IamConfig } from './iam/iam_config.ts'
import { exchangeToken } from './issuance/exchange.ts'
import { exchangeDepsFrom } from './issuance/exchange_deps.ts'
import { PilotRegistry } from './issuance/pilot_registry.ts'
import { BrokerMetrics } from './metrics/broker_metrics.ts'
import { observeExchange, observeIamFetch } from './metrics/observe_pipeline.ts'
import { assertKeysSign } from './issuance/key_self_test.ts'
import { KeyHolder } from './keys/key_holder.ts'
import { watchKeyring } from './keys/key_watcher.ts'
import { reloadSigningKeys, type KeyReloadResult } from './keys/reload_keys.ts'
import { ensureAndLoadKeys, type SigningKeys } from './keys/signing_keys.ts'
import type { Clock } from './lib/clock.ts'
import type { Logger } from './lib/logger.ts'
import { policyContextFromConfig } from './policy/context.ts'
import { authorizeAdmin } from './policy/decide.ts'
import { PolicyHolder } from './policy/policy_holder.ts'
import { warnWhileNoGrantAllowsVaultReads } from './credentials/vault_reads_warning.ts'
import { revocationLabels } from './policy/revocation_labels.ts'
import { preflight } from './preflight.ts'
import { brokerReadiness } from './readiness.ts'
import { assertRevocationsMatchAudit } from './revocation/revocation_consistency.ts'
import { startRevocationWatch } from './revocation/revocation_watch.ts'
import { anchorKeyFrom } from './audit/anchor.ts'
import { anchorFile } from './storage/anchor_file.ts'
import { RevocationService } from './revocation/revocation_service.ts'
import type { AbandonedWork, BrokerStore } from './storage/chained_store.ts'
import { openBrokerStore } from './storage/open_store.ts'
import { boundStoreStop } from './storage/store_stop_bound.ts'
import { isProduction } from './production.ts'
import { openRequestLimits } from './ratelimit/open_request_limits.ts'
import type { RequestLimits } from './ratelimit/request_limits.ts'
import { addressKeyer } from './ratelimit/address_key.ts'
import { buildCredentials, type CredentialServices } from './credentials/build_credentials.ts'

/** Everything `serve` runs, built once. The HTTP edge gets these; nothing is looked up per request. */
export interface BrokerServices {
  /** The configuration in force (with the development IAM's issuer added when one was started). */
  config: Config
  keys: SigningKeys
  store: BrokerStore
  revocations: RevocationService
  iam: IamAdapter
  policy: PolicyHolder
  devIam?: RunningDevIam
  exchange: Exchange
  adminAuthenticators: AdminAuthenticator[]
  /** The rate limits; the admin API's authentication takes part in the address limit. */
  limits: RequestLimits
  /** The pool CA's certificates, when `ca init` has created the CA; absent otherwise. */
  certificates?: { service: CertificateService; verifyCaller: (bearer: string) => Promise<VerifiedSubject>; limits: RequestLimits }
  /** The web console's own services; absent when admin.console.enabled is false. */
  console?: { signIn?: ConsoleSignIn; keys: () => KeyStatus; sessionSeconds: number; idleSeconds: number; persistentCookie: boolean; sessions: ConsoleSessionStore }
  /** /readyz: audit store and keys. */
  readiness: ReadinessCheck
  /** /readyz: each IAM's reachability, reported beside readiness. */
  iamStatus: IamStatusCheck
  /** Refusals with nobody to name, counted until their next aggregate record (flushed on a timer and at close). */
  refusals: Pick<RefusalTally, 'flush'>
  /** Prometheus metrics of this broker (its own registry); absent when metrics.enabled is false. */
  metrics?: BrokerMetrics
  /** GET /metrics access: open, admin authentication, or the SHA-256 of the bearer token in metrics.bearer_token_file. */
  metricsAuth: 'none' | 'admin' | { bearerSha256: Buffer }
  /** Users' job credentials, when credentials.enabled. */
  credentials?: CredentialServices
  /** Takes up the keys on disk (after `keys rotate`): self-tested, swapped whole, audited; the old set stays on failure. */
  reloadKeys(trigger: string): Promise<KeyReloadResult>
  /** Closes everything, the store last; bounded (STORE_STOP_MS) where the store's database could hold it. */
  close(): Promise<StopReport>
}

/** What a close had to leave unfinished: set when the store's database held it past STORE_STOP_MS. */
export interface StopReport { abandoned?: AbandonedWork }

/** Reuse an IAM reachability result this long: /readyz probes cost IAM two requests per issuer per interval. */
const IAM_STATUS_CACHE_SECONDS = 30
/** A readiness probe waits at most this long for IAM before answering with the previous result. */
const IAM_STATUS_MAX_WAIT_MS = 1000

/**
 * What `${IAM_ISSUER}` in policies stands for: the first configured IAM issuer, else (outside production)
 * the development IAM that serve starts on dev_iam.port. `policy check` and `policy explain` use it too,
 * so they judge the files as serve will.
 */
export function primaryIamIssuer(config: Config): string | undefined {
  const configured = config.iam.issuers[0]?.issuer
  if (configured !== undefined) return configured
  return isProduction(config) || config.dev_iam.port === 0 ? undefined : devIamIssuer(config.dev_iam.port)
}

/** Where serve keeps the broker's client secret at the development IAM it starts. */
function devIamSecretFile(config: Config): string {
  return join(config.data_dir, 'dev-iam', 'broker.secret')
}

/**
 * The IAM issuers serve would trust, for diagnostics from another process (`iam check`): the configured
 * ones, else (outside production) the development IAM serve starts on dev_iam.port, with the broker
 * client secret serve wrote for it once it has run. Undefined when there is nothing to check.
 */
export function servedIamConfig(config: Config): IamConfig | undefined {
  if (config.iam.issuers.length > 0) return config.iam
  const issuer = primaryIamIssuer(config)
  if (issuer === undefined) return undefined
  const secret = devIamSecretFile(config)
  return IamConfigSchema.parse({
    ...config.iam,
    issuers: [{
      issuer, discovery_url: `${issuer}${DEV_IAM_PATHS.discovery}`, development: true, profile: 'wlcg',
      ...(existsSync(secret) ? { client: { client_id: 'broker', auth_method: 'client_secret_basic', client_secret_file: secret } } : {}),
    }],
  })
}

/**
 * Builds keys, the audit/revocation store, the IAM adapter (starting the development IAM when none is
 * configured outside production), the policy holder and the token-exchange pipeline.
 */
export async function buildServices(initial: Config, deps: { log: Logger; clock: Clock; env?: NodeJS.ProcessEnv }): Promise<BrokerServices> {
  const { log, clock } = deps
  const closers: Array<() => unknown> = []
  // Armed once the store is open: bounds how long the closers may wait on its database.
  let armStopBound: (() => () => AbandonedWork | undefined) | undefined
  const close = async (): Promise<StopReport> => {
    const disarm = armStopBound?.()
    let abandoned: AbandonedWork | undefined
    try {
      for (const c of closers.reverse()) await c()
    } finally {
      abandoned = disarm?.()
    }
    return abandoned ? { abandoned } : {}
  }
  try {
    // Everything checkable is checked before the first key, database or development IAM is created.
    // With dev_iam.port 0 the development IAM's issuer is known only once it listens; checking the
    // policies needs just some value for ${IAM_ISSUER}, and the port-0 URL is one.
    const devIamPlanned = initial.iam.issuers.length === 0 && !isProduction(initial)
    const checkIamIssuer = primaryIamIssuer(initial) ?? (devIamPlanned ? devIamIssuer(initial.dev_iam.port) : undefined)
    await preflight(initial, { production: isProduction(initial), developmentIam: devIamPlanned, iamIssuer: checkIamIssuer, log })
    // Development mode signs only with a key it made (preflight): one it makes now, from the moment it exists.
    const loaded = keysAtStart(initial, clock.now(), devIamPlanned ? { onCondorKeyCreated: markDevelopmentKey } : {})
    const report = loaded.report
    const selfTest = (k: SigningKeys) => assertKeysSign(k, { trustDomain: initial.trust_domain, issuer: initial.issuer }, clock.now())
    selfTest(loaded.keys)
    const keyHolder = new KeyHolder(loaded.keys)
    const keys = keyHolder.view
    if (report.condorKeyCreated) log.warn('created HTCondor signing key; copy it to the verifying daemons\' SEC_PASSWORD_DIRECTORY', { path: report.condorKeyCreated })
    if (report.jwtKeyCreated) log.warn('created SciToken signing key', { kid: report.jwtKeyCreated, alg: initial.scitoken.alg })
    if (report.nextJwtKeyCreated) log.info('prepared the next SciToken key: published in /jwks, signs from the next "keys rotate"', { kid: report.nextJwtKeyCreated })
    if (report.nextJwtKeyError) log.warn('could not prepare the next SciToken key; the next "keys rotate" signs with a kid verifiers have not fetched', { error: report.nextJwtKeyError })
    if (report.heldSigningKey) log.warn('the keyring no longer publishes the key this broker signed with before it stopped; it stays in /jwks until its last token expires', { kid: report.heldSigningKey })
    if (report.signingRecordError) log.warn('could not record the kid this broker signs with; a restart that takes a later rotation up late cannot hold it', { error: report.signingRecordError })
    if (report.heldRecordError) log.error('a key held in /jwks past its publish_until is dropped now, or may be at the next restart', { error: report.heldRecordError })

    let config = initial
    let devIam: RunningDevIam | undefined
    if (config.iam.issuers.length === 0) {
      // The development IAM puts the broker's issuer in `aud` when a client asks for no audience, and
      // the broker expects it: the default setup checks audience as production must.
      // Loaded here, not at the top: a broker trusting a real IAM (or one running elsewhere) never holds
      // oidc-provider and koa in memory (~40 MB resident, docs/performance.md).
      const { startDevIam } = await import('./dev_iam/start_dev_iam.ts')
      devIam = await startDevIam({
        port: config.dev_iam.port, log, defaultAudience: config.issuer, production: isProduction(config),
        ...(config.admin.console.enabled ? { config: withConsoleSignIn(defaultDevIamConfig(), consoleRedirectUri(config)) } : {}),
      })
      closers.push(() => devIam!.close())
      log.warn('DEVELOPMENT IAM started beside the broker; not for production', { issuer: devIam.issuer })
      const entry = devIamTrustedIssuer(devIamBrokerSettings(devIam), devIamSecretFile(config), { audience: config.issuer })
      config = { ...config, iam: IamConfigSchema.parse({ ...config.iam, issuers: [entry] }) }
    }

    const store = await openBrokerStore(config)
    closers.push(() => store.close())
    armStopBound = () => boundStoreStop(store, log)
    // A previous version writing after the upgrade (a replica not yet restarted) did not raise them.
    const reseedStart = performance.now()
    await store.reseedHorizons()
    const horizons = await store.issuanceHorizon()
    log.info('issuance horizons read from the audit log', {
      ms: Math.round(performance.now() - reseedStart),
      latestTokenExp: horizons.token.exp, longestTokenLifetime: horizons.token.lifetime,
      latestCertificateExp: horizons.certificate.exp, longestCertificateLifetime: horizons.certificate.lifetime,
    })
    // Sealed with a key derived from the IDTOKEN key, which lives outside the database (audit/anchor.ts); a
    // copy beside it outside the database too, so deleting the database's own does not hide a cut or rewrite.
    const anchorCopy = anchorFile(auditAnchorFile(config), { log })
    let startAnchor: unknown
    await assertRevocationsMatchAudit(store, { anchorKey: anchorKeyFrom(keys.idtoken.hmac), anchorCopy, onAnchorWrite: (failure) => { startAnchor = failure } })
    // Again while serving, after each revocation and at a clean stop, so the anchor covers what is appended
    // between restarts too (a copy of the database restored from before it is refused at the next start).
    const watch = startRevocationWatch(store, { anchorKey: () => anchorKeyFrom(keyHolder.current.idtoken.hmac), anchorCopy, intervalSeconds: config.audit.anchor_interval, log })
    // An anchor the start-up check could not write is logged and retried as the watch's own are.
    if (startAnchor !== undefined) watch.anchorWritten(startAnchor)
    closers.push(() => watch.stop())
    const policy = new PolicyHolder({
      dir: config.policy_dir,
      context: policyContextFromConfig(config, primaryIamIssuer(config)),
      log, watch: config.policy.watch, debounceMs: config.policy.watch_debounce_ms,
    }).start()
    closers.push(() => policy.close())
    policy.onReload((e) => {
      const event: AuditEvent = {
        type: 'policy.reloaded', time: clock.now(), decision: e.ok ? 'allow' : 'deny',
        reason: e.ok ? `${e.trigger}: ${e.rules} rules` : `${e.trigger}: refused, previous policy kept`,
        detail: e.ok ? { digest: e.digest, previousDigest: e.previousDigest, files: e.files } : { previousDigest: e.previousDigest, errors: e.errors },
      }
      store.record(event).catch((err: unknown) => log.error('could not audit a policy reload', { err }))
    })

    const revocations = new RevocationService({
      store, clock, log,
      maxTokenLifetime: maxTokenLifetime(config),
      refreshSeconds: config.revocation.refresh_seconds,
      knownLabels: () => revocationLabels(policy.current),
      knownIssuers: () => new Set(config.iam.issuers.map((i) => i.issuer)),
      committed: () => watch.afterChange(),
    })
    await revocations.refresh()
    revocations.startAutoRefresh()
    closers.push(() => revocations.stop())
    if (config.audit.retention_days > 0) {
      const floor = certificateRetentionFloor(store, { maxLifetime: config.ca.max_lifetime, crlLifetime: config.ca.crl_lifetime }, () => clock.now())
      closers.push(startRetention(store, { days: config.audit.retention_days, intervalSeconds: config.audit.prune_interval, clock, log, floor }))
    }

    // Built before the parts it watches: they report to it from their first call.
    const pilotRegistry = new PilotRegistry(store)
    const condorKeyFile = loaded.store.condorKeyPath(config.idtoken.key)
    const metrics = config.metrics.enabled
      ? new BrokerMetrics({
        clock, policy: () => policy.current, process: config.metrics.process, keyRotationDays: config.metrics.key_rotation_days,
        vaultListener: config.credentials.enabled && config.credentials.vault.enabled,
        sources: {
          commits: () => store.commitStats(),
          batches: (listener) => store.observeBatches(listener),
          revocations: () => revocations.inForce(),
          keys: () => [
            // The HTCondor key file carries no creation time of its own: its modification time stands for it.
            { key: 'idtoken', created: fileTime(condorKeyFile) },
            { key: 'scitoken', created: keyHolder.current.scitoken.created },
          ],
          livePilots: (now) => pilotRegistry.liveBySite(now),
          // Read at scrape time, once the credential services below exist.
          ...(config.credentials.enabled ? { unstoredRefreshTokens: (): { memory: number; disk: number } => credentials?.unstoredRefreshTokens() ?? { memory: 0, disk: 0 } } : {}),
        },
      })
      : undefined

    if (metrics) policy.onReload((e) => metrics.reloaded('policy', e.ok))

    const iam = await createIamAdapter(config.iam, { log, clock, ...(metrics ? { wrapFetch: (f) => observeIamFetch(f, metrics) } : {}) })
    closers.push(() => iam.close())

    const refusals = new RefusalTally({
      audit: store, clock, log,
      // Half the queue: the aggregate waits rather than take a place an issuance may need.
      busy: () => store.commitStats().pending * 2 >= config.audit.group_commit.max_pending,
      clientOf: addressKeyer(config.rate_limits.address.ipv6_prefix),
    })
    // Registered after the store, so closing writes the last aggregate before the store closes.
    closers.push(refusals.start(config.audit.denied_aggregate_seconds))
    const limits = await openRequestLimits(config, { log, ...(metrics ? { onStoreFallback: () => metrics.rateLimitStoreFallback() } : {}) })
    closers.push(() => limits.close())
    const rl = config.rate_limits
    const limited = [rl.caller.requests > 0 && 'caller', (rl.role.requests > 0 || Object.keys(rl.roles).length > 0) && 'role', rl.address.requests > 0 && 'address',
      config.credentials.enabled && rl.registration.requests > 0 && 'registration'].filter(Boolean)
    if (limited.length > 0) log.info('rate limits in force', { limits: limited, store: limits.store })
    const exchangeDeps = exchangeDepsFrom({
      config, keys, audit: store, clock, iam, policy, generations: revocations, blocks: revocations, refusals, log,
      limits: limits.limits, pilots: { store, revocations, registry: pilotRegistry }, ...(metrics ? { observer: metrics } : {}),
    })

    const credentials: CredentialServices | undefined = config.credentials.enabled
      ? buildCredentials({ config, keys, store, iam, policy, revocations, clock, log, production: isProduction(config), env: deps.env ?? process.env, limits: limits.limits, ...(metrics ? { observer: metrics } : {}) })
      : undefined
    // Before the store closes (closers run in reverse): a rotated refresh token still held in memory
    // because its write failed gets one more try.
    if (credentials) closers.push(() => credentials.close())
    // The same condition under which server.ts opens the Vault-compatible listener.
    if (credentials && config.credentials.vault.enabled) closers.push(warnWhileNoGrantAllowsVaultReads(policy, log))

    const adminAuthenticators: AdminAuthenticator[] = []
    if (config.admin.bootstrap_token_file) {
      const boot = loadBootstrapToken(config.admin.bootstrap_token_file)
      if (boot.created) log.warn('created the bootstrap admin token file', { file: config.admin.bootstrap_token_file })
      adminAuthenticators.push(bootstrapTokenAuthenticator(boot.sha256))
    }
    adminAuthenticators.push(iamAdminAuthenticator(iam, policy))

    let metricsAuth: BrokerServices['metricsAuth'] = config.metrics.auth === 'bearer' ? 'none' : config.metrics.auth
    if (config.metrics.enabled && config.metrics.auth === 'bearer') {
      const file = config.metrics.bearer_token_file!
      const token = loadBootstrapToken(file)
      if (token.created) log.warn('created the metrics bearer token file; give it to Prometheus as credentials_file', { file })
      metricsAuth = { bearerSha256: token.sha256 }
    }
    let certificates: BrokerServices['certificates']
    if (existsSync(poolCaFiles(caDir(config)).keyFile)) {
      // Loaded only when a CA exists: @peculiar/x509 costs ~15 MB resident (docs/performance.md).
      const [{ PoolCa }, { CertificateService }] = await Promise.all([import('./ca/pool_ca.ts'), import('./ca/certificate_service.ts')])
      const ca = await PoolCa.load(caDir(config))
      const service = new CertificateService({
        ca, audit: store, policy, clock, maxLifetime: config.ca.max_lifetime, crlLifetime: config.ca.crl_lifetime, limits: limits.limits, refusals,
        committed: () => watch.afterChange(),
      })
      certificates = { service, verifyCaller: (bearer) => verifyUnrevokedCaller(iam, revocations, bearer), limits: limits.limits }
    }
    const consoleServices = config.admin.console.enabled ? consoleServicesFrom(config, iam, clock, store) : undefined

    const reachability = new IamReachability({
      discovery: iam.discovery, fetch: iam.fetch, timeoutSeconds: Math.max(config.iam.timeout_seconds, config.iam.jwks_timeout_seconds),
      cacheSeconds: IAM_STATUS_CACHE_SECONDS, maxWaitMs: IAM_STATUS_MAX_WAIT_MS,
    })

    const reloadKeys = async (trigger: string) => {
      const result = await reloadSigningKeys(keyHolder, trigger, { config, selfTest, audit: store, clock, log })
      // An HTCondor key file the next start would refuse is a refusal too, though the SciToken keys swapped.
      metrics?.reloaded('keys', result.ok && result.idtokenUnreadable === undefined)
      return result
    }
    if (config.scitoken.watch_keys) {
      closers.push(watchKeyring({
        dir: `${config.data_dir}/keys`, inForce: () => keyHolder.current, reload: reloadKeys, clock, log,
        ...(metrics ? { onUnreadable: () => metrics.reloaded('keys', false) } : {}),
      }))
    }

    return {
      config, keys, store, revocations, iam, policy, ...(devIam ? { devIam } : {}),
      exchange: metrics
        ? observeExchange((readForm, ctx) => exchangeToken(readForm, ctx, exchangeDeps), metrics)
        : (readForm, ctx) => exchangeToken(readForm, ctx, exchangeDeps),
      ...(metrics ? { metrics } : {}),
      metricsAuth,
      adminAuthenticators,
      limits: limits.limits,
      ...(certificates ? { certificates } : {}),
      ...(consoleServices ? { console: consoleServices } : {}),
      readiness: brokerReadiness({ store, keys: () => keyHolder.current, issuers: { trustDomain: config.trust_domain, issuer: config.issuer }, clock, log }),
      iamStatus: () => reachability.report(),
      refusals,
      ...(credentials ? { credentials } : {}),
      reloadKeys,
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

/** A file's modification time in epoch seconds, or undefined when it cannot be read. */
function fileTime(file: string): number | undefined {
  try {
    return Math.floor(statSync(file).mtimeMs / 1000)
  } catch {
    return undefined
  }
}

/**
 * An IAM access token that verifies, whose claims and caller are not revoked: the same refusal the admin
 * middleware applies, for routes a policy (not the admin rule) opens.
 */
async function verifyUnrevokedCaller(iam: IamAdapter, revocations: RevocationService, bearer: string): Promise<VerifiedSubject> {
  let subject: VerifiedSubject
  try {
    subject = await iam.verifier.verify(bearer)
  } catch (err) {
    if (err instanceof BrokerError && err.status !== 503) throw new InvalidToken('the IAM access token is not valid', { presented: true })
    throw err
  }
  const blocked = revocations.blockedCaller({ sub: subject.sub, iss: subject.iss, ...(subject.client_id ? { client_id: subject.client_id } : {}) })
  if (revocations.isRevoked(subject.claims) || blocked !== undefined) throw new InvalidToken('the token has been revoked', { presented: true })
  // A delegated token (act) is refused by the route, which can put the refusal on record under its subject.
  return subject
}

/** Where IAM sends a console sign-in back to. */
export function consoleRedirectUri(config: Config): string {
  return config.admin.console.redirect_uri ?? `${config.issuer.replace(/\/$/, '')}/console/callback`
}

/**
 * The console's sign-in (at admin.console.iam_issuer, else the first trusted issuer, when the broker has a
 * client there) and its key status reader.
 */
function consoleServicesFrom(config: Config, iam: IamAdapter, clock: Clock, store: ConsoleSessionStore): NonNullable<BrokerServices['console']> {
  const c = config.admin.console
  const issuer = c.iam_issuer ?? config.iam.issuers[0]?.issuer
  const trusted = issuer !== undefined ? iam.discovery.issuer(issuer) : undefined
  if (c.iam_issuer !== undefined && !trusted) throw new ConfigurationError('ECONFIG', `admin.console.iam_issuer ${c.iam_issuer} is not one of iam.issuers`)
  const keys = new KeyStore(`${config.data_dir}/keys`)
  return {
    ...(trusted && trusted.credentials.method !== 'none' ? { signIn: oidcSignIn(iam.discovery, trusted.config.issuer, consoleRedirectUri(config), () => clock.now(), c.post_logout_redirect_uri !== undefined ? { postLogoutRedirectUri: c.post_logout_redirect_uri } : {}) } : {}),
    keys: () => keyStatus(keys, config.idtoken.key, clock.now()),
    sessionSeconds: c.session_seconds,
    idleSeconds: c.idle_seconds,
    persistentCookie: c.persistent_cookie,
    // In the audit store: sessions survive a restart and hold on every replica sharing its database.
    sessions: store,
  }
}

/** "An IAM token whose policy grants admin": verified like a subject token, then the policy's admin rule. */
function iamAdminAuthenticator(iam: IamAdapter, policy: PolicyHolder): AdminAuthenticator {
  return {
    async authenticate(bearer) {
      let subject
      try {
        subject = await iam.verifier.verify(bearer)
      } catch (err) {
        // A token IAM did not issue, or a bad one, is simply not an IAM admin; IAM being down is a 503.
        if (err instanceof BrokerError && err.status !== 503) return null
        throw err
      }
      // A token IAM issued to another client acting for the admin (act, src/iam/delegation.ts) is that
      // client's, not the admin's: it opens nothing here, as it mints nothing at POST /token.
      if (delegationRefusal(subject) !== undefined) return null
      const verdict = authorizeAdmin(policy.current, subject)
      return verdict.allow ? { id: `${subject.iss},${subject.sub}`, via: `iam:${verdict.ruleId}`, claims: subject.claims } : null
    },
  }
}

/**
 * The keys as serve starts on them. A refusal of what is on disk (a key file group can read, a keyring that
 * is not JSON, a missing .pem: an OperatorError) is a configuration no restart mends, like the same refusal
 * of a TLS key or the audit MAC key in preflight, so serve exits EX_CONFIG on it; a failed write while
 * making a key (ENOSPC) stays what it is, for the supervisor to retry.
 */
function keysAtStart(config: Config, now: number, options: Parameters<typeof ensureAndLoadKeys>[2]): ReturnType<typeof ensureAndLoadKeys> {
  try {
    return ensureAndLoadKeys(config, now, options)
  } catch (err) {
    if (err instanceof OperatorError && !(err instanceof ConfigurationError)) throw new ConfigurationError(err.code, err.message, { cause: err })
    throw err
  }
}
