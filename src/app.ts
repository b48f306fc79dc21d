import { Hono, type MiddlewareHandler } from 'hono'
import { maxTokenLifetime, type Config } from './config.ts'
import { NotFound } from './errors.ts'
import { brokerMetadata } from './contract/discovery.ts'
import { requestId } from './http/middleware/request_id.ts'
import { accessLog } from './http/access_log.ts'
import { accessLogMiddleware } from './http/middleware/access_log.ts'
import { methodGuard } from './http/middleware/method_guard.ts'
import { methodNotAllowedPage } from './http/middleware/console_session.ts'
import { MethodTable } from './http/method_table.ts'
import { bearerToken } from './http/bearer_token.ts'
import { ADMIN_REALM, METRICS_REALM, oauthErrorResponse } from './http/oauth_error_response.ts'
import { discoveryRoutes } from './http/routes/discovery.ts'
import { healthRoutes, type IamStatusCheck, type LivenessCheck, type ReadinessCheck } from './http/routes/health.ts'
import { jwksRoutes } from './http/routes/jwks.ts'
import { openApiRoutes } from './http/routes/openapi.ts'
import { buildOpenApiDocument } from './http/openapi/document.ts'
import type { Mount } from './http/openapi/route_spec.ts'
import { BROKER_ROUTES } from './http/openapi/routes.ts'
import { packageVersion } from './cli/version.ts'
import type { AuditStore } from './audit/audit_log.ts'
import type { AuditAggregates } from './audit/aggregate.ts'
import { adminAuth, bootstrapTokenAuthenticator, type AdminAuthenticator } from './http/middleware/admin_auth.ts'
import { auditRoutes } from './http/routes/audit.ts'
import { revocationRoutes } from './http/routes/revocations.ts'
import { pilotRoutes } from './http/routes/pilots.ts'
import { metricsRoutes, type MetricsPage } from './http/routes/metrics.ts'
import { certificateRoutes } from './http/routes/certificates.ts'
import type { CertificateService } from './ca/certificate_service.ts'
import type { VerifiedSubject } from './iam/subject.ts'
import type { RequestLimits } from './ratelimit/request_limits.ts'
import { systemClock, type Clock } from './lib/clock.ts'
import { consoleRoutes } from './http/routes/console.ts'
import { ChainStatus } from './console/chain_status.ts'
import type { ConsoleSignIn } from './console/oidc_sign_in.ts'
import { ConsoleSessions, DEFAULT_IDLE_SECONDS } from './console/sessions.ts'
import type { ConsoleSessionStore } from './console/session_store.ts'
import type { KeyStatus } from './keys/key_status.ts'
import { policyExplainRoutes, type PolicySource } from './http/routes/policy_explain.ts'
import { tokenRoutes, type Exchange } from './http/routes/token.ts'
import { credentialRoutes, JOB_TOKEN_ROUTE } from './http/routes/credentials.ts'
import type { CredentialServices } from './credentials/build_credentials.ts'
import { InvalidToken } from './errors.ts'
import type { RevocationService } from './revocation/revocation_service.ts'
import type { RevocationStore } from './revocation/revocation.ts'
import { liveWindow } from './issuance/pilot_list.ts'
import type { SigningKeys } from './keys/signing_keys.ts'
import type { Logger } from './lib/logger.ts'

/** Everything the HTTP edge needs, built once in the composition root. */
export interface AppDeps {
  config: Config
  keys: SigningKeys
  log: Logger
  readiness: ReadinessCheck
  /** IAM reachability for /readyz, reported beside readiness; absent: not shown. */
  iamStatus?: IamStatusCheck
  /** Why /healthz should fail (a write path stopped for good); absent: always live. */
  liveness?: LivenessCheck
  /** Admin API (/v1/audit, /v1/revocations); absent: not mounted. */
  admin?: { audit: Pick<AuditStore, 'query' | 'scan' | 'scanStored' | 'macVerdict' | 'verify'> & AuditAggregates & Pick<RevocationStore, 'issuanceHorizon'>; revocations: RevocationService; authenticators: AdminAuthenticator[]; policy?: PolicySource; limits?: Pick<RequestLimits, 'blockedAddress' | 'noteRefused'> }
  /** The pool CA (/v1/ca/*, /v1/certificates); absent: not mounted. Revocation by serial needs `admin` too. */
  certificates?: { service: CertificateService; verifyCaller: (bearer: string) => Promise<VerifiedSubject>; limits?: Pick<RequestLimits, 'blockedAddress' | 'noteRefused'> }
  /** The web console at /console (with `admin`); absent: not mounted. Sessions live in `sessions` (the broker store). */
  console?: {
    signIn?: ConsoleSignIn; keys: () => KeyStatus; sessionSeconds: number; sessions: ConsoleSessionStore
    /** Default DEFAULT_IDLE_SECONDS (console/sessions.ts). */
    idleSeconds?: number
    /** The session cookie outlives the browser (Max-Age: sessionSeconds); default: it does not. */
    persistentCookie?: boolean
    /** Default: the system clock. */
    clock?: Clock
  }
  /** POST /token (RFC 8693); absent: not mounted. */
  exchange?: Exchange
  /**
   * GET /metrics; absent: not mounted. `auth`: open, the admin API's authentication, or one bearer token
   * (its SHA-256, compared as the bootstrap admin token is).
   */
  metrics?: { page: MetricsPage; auth: 'none' | 'admin' | { bearerSha256: Buffer } }
  /** Users' job credentials (/v1/credentials); absent: not mounted. Listing and revoking need `admin`. */
  credentials?: CredentialServices
}

/** Wires middleware and routes; no business logic lives here. */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono()
  app.use(requestId())
  const access = accessLog(deps.log, deps.config.log.requests)
  if (access) app.use(accessLogMiddleware(access, deps.log))
  // One 405 for every route, read from the routes registered below (RFC 9110 §15.5.6). HEAD is refused too
  // where a GET mints a token: it would be minted and audited only to be dropped.
  let methods: MethodTable | undefined
  app.use(methodGuard(() => (methods ??= new MethodTable(app.routes, { getMints: [JOB_TOKEN_ROUTE] })), deps.console && deps.admin ? [{ prefix: '/console', answer: methodNotAllowedPage }] : []))
  app.route('/', healthRoutes(deps.readiness, deps.iamStatus, deps.liveness))
  // The signing algorithm first, then any other a still-published key verifies with (a rotation across algorithms).
  app.route('/', discoveryRoutes(() => brokerMetadata(deps.config.issuer, [...new Set([deps.keys.scitoken.alg, ...deps.keys.jwks.map((k) => k.alg)])])))
  app.route('/', jwksRoutes(() => deps.keys.jwks))
  // Every route mounted here is described in src/http/openapi/routes.ts (a test holds the two together).
  const mounted = new Set<Mount>(['core', ...(deps.exchange ? ['exchange' as const] : []), ...(deps.admin ? ['admin' as const] : []), ...(deps.admin?.policy ? ['policy' as const] : []), ...(deps.metrics ? ['metrics' as const] : []),
    ...(deps.certificates ? ['certificates' as const] : []), ...(deps.certificates && deps.admin ? ['certificates-admin' as const] : []),
    ...(deps.console && deps.admin ? ['console' as const] : []), ...(deps.credentials ? ['credentials' as const] : [])])
  app.route('/', openApiRoutes(() => buildOpenApiDocument(BROKER_ROUTES, { issuer: deps.config.issuer, version: packageVersion(), mounted })))
  if (deps.exchange) app.route('/', tokenRoutes(deps.exchange))
  const auth = deps.admin ? adminAuth({ authenticators: deps.admin.authenticators, revocations: deps.admin.revocations, limits: deps.admin.limits }) : undefined
  if (deps.metrics) {
    const m = deps.metrics
    if (m.auth === 'admin' && !auth) throw new TypeError('metrics behind admin authentication need the admin API')
    const metricsAuth = m.auth === 'none' ? undefined : m.auth === 'admin' ? auth : adminAuth({ authenticators: [bootstrapTokenAuthenticator(m.auth.bearerSha256)] }, METRICS_REALM)
    app.route('/', metricsRoutes({ page: m.page, auth: metricsAuth }))
  }
  if (deps.certificates) {
    app.route('/', certificateRoutes({ certificates: deps.certificates.service, verifyCaller: deps.certificates.verifyCaller, ...(auth ? { adminAuth: auth } : {}), ...(deps.certificates.limits ? { limits: deps.certificates.limits } : {}) }))
  }
  if (deps.credentials) {
    const credentialsAdmin: MiddlewareHandler = auth ?? ((c) => {
      c.set('bearerRealm', ADMIN_REALM)
      // The header is read as on every bearer route (no token, another scheme, a malformed one), then refused.
      bearerToken(c.req.header('authorization'))
      throw new InvalidToken('the admin API is not enabled', { presented: true })
    })
    app.route('/', credentialRoutes({ credentials: deps.credentials.service, jobTokens: deps.credentials.jobTokens, credd: deps.credentials.credd, adminAuth: credentialsAdmin, clock: deps.credentials.credd.clock }))
  }
  if (deps.admin && auth) {
    const window = liveWindow(deps.admin.audit, maxTokenLifetime(deps.config))
    app.route('/', auditRoutes({ audit: deps.admin.audit, auth, clock: systemClock, liveWindow: window }))
    app.route('/', revocationRoutes({ revocations: deps.admin.revocations, auth }))
    app.route('/', pilotRoutes({ audit: deps.admin.audit, auth, clock: systemClock, window }))
    if (deps.admin.policy) app.route('/', policyExplainRoutes({ policy: deps.admin.policy, adminAuth: auth, blocks: deps.admin.revocations }))
    if (deps.console) {
      app.route('/', consoleRoutes({
        audit: deps.admin.audit, revocations: deps.admin.revocations, ...(deps.admin.policy ? { policy: deps.admin.policy } : {}),
        ...(deps.credentials ? { credentials: deps.credentials.service } : {}),
        auth: { authenticators: deps.admin.authenticators, revocations: deps.admin.revocations, limits: deps.admin.limits },
        ...(deps.console.signIn ? { signIn: deps.console.signIn } : {}),
        sessions: new ConsoleSessions(deps.console.sessions, { idleSeconds: deps.console.idleSeconds ?? DEFAULT_IDLE_SECONDS }), chain: new ChainStatus(deps.admin.audit, () => systemClock.now()),
        keys: deps.console.keys, clock: deps.console.clock ?? systemClock, log: deps.log, origin: new URL(deps.config.issuer).origin,
        sessionSeconds: deps.console.sessionSeconds, persistentCookie: deps.console.persistentCookie ?? false, liveWindow: window,
      }))
    }
  }
  const errorResponse = oauthErrorResponse(deps.log)
  app.notFound((c) => errorResponse(new NotFound('no endpoint at this path'), c))
  app.onError(errorResponse)
  return app
}
