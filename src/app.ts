import { Hono } from 'hono'
import { maxTokenLifetime, type Config } from './config.ts'
import { NotFound } from './errors.ts'
import { brokerMetadata } from './contract/discovery.ts'
import { requestId } from './http/middleware/request_id.ts'
import { accessLog } from './http/access_log.ts'
import { accessLogMiddleware } from './http/middleware/access_log.ts'
import { oauthErrorResponse } from './http/oauth_error_response.ts'
import { discoveryRoutes } from './http/routes/discovery.ts'
import { healthRoutes, type IamStatusCheck, type ReadinessCheck } from './http/routes/health.ts'
import { jwksRoutes } from './http/routes/jwks.ts'
import type { AuditStore } from './audit/audit_log.ts'
import { adminAuth, type AdminAuthenticator } from './http/middleware/admin_auth.ts'
import { auditRoutes } from './http/routes/audit.ts'
import { revocationRoutes } from './http/routes/revocations.ts'
import { pilotRoutes } from './http/routes/pilots.ts'
import { systemClock } from './lib/clock.ts'
import { policyExplainRoutes, type PolicySource } from './http/routes/policy_explain.ts'
import { tokenRoutes, type Exchange } from './http/routes/token.ts'
import { credentialRoutes } from './http/routes/credentials.ts'
import type { CredentialServices } from './credentials/build_credentials.ts'
import { InvalidToken } from './errors.ts'
import type { RevocationService } from './revocation/revocation_service.ts'
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
  /** Admin API (/v1/audit, /v1/revocations); absent: not mounted. */
  admin?: { audit: Pick<AuditStore, 'query'>; revocations: RevocationService; authenticators: AdminAuthenticator[]; policy?: PolicySource }
  /** POST /token (RFC 8693); absent: not mounted. */
  exchange?: Exchange
  /** Users' job credentials (/v1/credentials); absent: not mounted. Listing and revoking need `admin`. */
  credentials?: CredentialServices
}

/** Wires middleware and routes; no business logic lives here. */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono()
  app.use(requestId())
  const access = accessLog(deps.log, deps.config.log.requests)
  if (access) app.use(accessLogMiddleware(access))
  app.route('/', healthRoutes(deps.readiness, deps.iamStatus))
  app.route('/', discoveryRoutes(brokerMetadata(deps.config.issuer, [deps.keys.scitoken.alg])))
  app.route('/', jwksRoutes(() => deps.keys.jwks))
  if (deps.exchange) app.route('/', tokenRoutes(deps.exchange))
  if (deps.credentials) {
    const auth = deps.admin
      ? adminAuth({ authenticators: deps.admin.authenticators, revocations: deps.admin.revocations })
      : () => { throw new InvalidToken('the admin API is not enabled', { presented: true }) }
    app.route('/', credentialRoutes({ credentials: deps.credentials.service, jobTokens: deps.credentials.jobTokens, credd: deps.credentials.credd, adminAuth: auth, clock: systemClock }))
  }
  if (deps.admin) {
    const auth = adminAuth({ authenticators: deps.admin.authenticators, revocations: deps.admin.revocations })
    app.route('/', auditRoutes({ audit: deps.admin.audit, auth }))
    app.route('/', revocationRoutes({ revocations: deps.admin.revocations, auth }))
    app.route('/', pilotRoutes({ audit: deps.admin.audit, auth, clock: systemClock, window: maxTokenLifetime(deps.config) }))
    if (deps.admin.policy) app.route('/', policyExplainRoutes({ policy: deps.admin.policy, adminAuth: auth }))
  }
  const errorResponse = oauthErrorResponse(deps.log)
  app.notFound((c) => errorResponse(new NotFound('no endpoint at this path'), c))
  app.onError(errorResponse)
  return app
}
