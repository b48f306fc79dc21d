import { z } from 'zod'
import { AuditQueryParams, AuditSummaryParams } from '../routes/audit.ts'
import { RegisterCredentialRequest } from '../../contract/job_credentials.ts'
import { TokenQuery } from '../routes/credentials.ts'
import { CertificateBody, CertificateRevokeBody } from '../routes/certificates.ts'
import { ExplainBody } from '../routes/policy_explain.ts'
import { PilotsQuery } from '../routes/pilots.ts'
import { CondorExpressionQuery, LiftBody, RevocationBody, RevocationIdParam, RevocationListQuery } from '../routes/revocations.ts'
import {
  AuditPage, BrokerMetadata, CondorExpressionJson, Jwks, JobTokenRefusal, LivePilots, Liveness, NotLive, OAuthError, PolicyExplanation, Readiness,
  RevocationCreated, RevocationDryRun, RevocationList, TokenExchangeResponse,
} from './response_schemas.ts'
import { CACHE_CONTROL_NO_STORE, LOCATION, NO_STORE_HEADERS, oauthErrorHeaders, RETRY_AFTER } from './headers.ts'
import { ADMIN_REALM, METRICS_REALM } from '../oauth_error_response.ts'
import { json, type ErrorStatus, type HeaderSpec, type ResponseSpec, type RouteSpec } from './route_spec.ts'
import { TokenRequestForm } from './token_form.ts'

/**
 * Every route the broker serves, as the OpenAPI document describes it. A route added to createApp and not
 * here (or the other way round) fails test/http/openapi.test.ts, which compares this list with the app's
 * real routes.
 */

/** What every admin route may answer besides its own errors (middleware/admin_auth.ts). */
const ADMIN_ERRORS: Partial<Record<ErrorStatus, string>> = {
  401: 'invalid_token: no, a bad or a revoked admin bearer token (WWW-Authenticate: Bearer).',
  429: 'slow_down: the client address limit is used up by refused unauthenticated requests (Retry-After).',
  503: 'temporarily_unavailable: IAM could not be asked about an IAM admin token, or the audit store could not be read (a PostgreSQL store out of reach) (Retry-After).',
}

/** An admin route that records what it does in the audit log: its write fails closed when the store cannot commit. */
const ADMIN_WRITE_ERRORS: Partial<Record<ErrorStatus, string>> = {
  ...ADMIN_ERRORS,
  503: 'temporarily_unavailable: IAM could not be asked about an IAM admin token, or the audit store is out of reach or busy, so nothing was changed (Retry-After).',
}

export const BROKER_ROUTES: readonly RouteSpec[] = [
  {
    method: 'get', path: '/healthz', mount: 'core', operationId: 'liveness', tags: ['operations'],
    summary: 'Liveness: the process answers and can still serve without a restart',
    responses: { 200: { description: 'Alive.', content: json(Liveness) } },
    errors: { 503: { description: 'Not live: the audit write path has stopped for good; serve is stopping, to be restarted by its supervisor.', content: json(NotLive) } },
  },
  {
    method: 'get', path: '/readyz', mount: 'core', operationId: 'readiness', tags: ['operations'],
    summary: 'Readiness: keys loaded and self-tested, audit records committing',
    description: 'IAM reachability is reported under `iam` but does not decide readiness.',
    responses: { 200: { description: 'Ready.', content: json(Readiness) } },
    errors: { 503: { description: 'Not ready: the body names the failing check.', content: json(Readiness) } },
  },
  {
    method: 'get', path: '/openapi.json', mount: 'core', operationId: 'openapi', tags: ['operations'],
    summary: 'This document (OpenAPI 3.1)',
    responses: { 200: { description: 'The OpenAPI document.', content: json(z.record(z.string(), z.unknown())) } },
    errors: {},
  },
  {
    method: 'get', path: '/metrics', mount: 'metrics', operationId: 'metrics', tags: ['operations'], realms: [ADMIN_REALM, METRICS_REALM],
    summary: 'Prometheus metrics (text exposition format 0.0.4)',
    description: 'Open by default; `metrics.auth` may require the admin bearer token or a scrape token. Label values are bounded: no sub, jti or caller.',
    responses: { 200: { description: 'Metrics in the Prometheus text format.', content: { 'text/plain; version=0.0.4': z.string() } } },
    errors: {
      401: 'invalid_token: scraping needs a bearer token here (WWW-Authenticate: Bearer).',
      429: 'slow_down: with metrics.auth admin, the client address limit is used up by refused bearers (Retry-After).',
      503: 'temporarily_unavailable: with metrics.auth admin, IAM could not be asked about an IAM admin token (Retry-After).',
    },
  },
  {
    method: 'get', path: '/.well-known/openid-configuration', mount: 'core', operationId: 'openidConfiguration', tags: ['discovery'],
    summary: 'OpenID discovery metadata (read by scitokens-cpp for jwks_uri)',
    responses: { 200: { description: 'Broker metadata.', content: json(BrokerMetadata) } },
    errors: {},
  },
  {
    method: 'get', path: '/.well-known/oauth-authorization-server', mount: 'core', operationId: 'oauthAuthorizationServer', tags: ['discovery'],
    summary: 'RFC 8414 authorization server metadata (same body as OpenID discovery)',
    responses: { 200: { description: 'Broker metadata.', content: json(BrokerMetadata) } },
    errors: {},
  },
  {
    method: 'get', path: '/jwks', mount: 'core', operationId: 'jwks', tags: ['discovery'],
    summary: 'Public SciToken signing keys: the active one and retired ones still needed',
    responses: { 200: { description: 'JSON Web Key Set (RFC 7517).', content: json(Jwks) } },
    errors: {},
  },
  {
    method: 'post', path: '/token', mount: 'exchange', operationId: 'token', tags: ['token'],
    summary: 'RFC 8693 token exchange, and the SLURM pilot enrolment, redemption and renewal',
    description: 'The caller is authenticated by its subject token, not by client credentials. Form fields must not be repeated, except `audience` and `resource`; unknown fields are ignored. Responses are never cached.',
    body: { contentType: 'application/x-www-form-urlencoded', schema: TokenRequestForm, required: true },
    responses: { 200: { description: 'The issued token (RFC 8693 §2.2.1).', content: json(TokenExchangeResponse), headers: NO_STORE_HEADERS } },
    errors: {
      400: 'invalid_request (also: a repeated parameter, a body that is not form-encoded, content-coded, transfer-coded other than chunked, or larger than 32 KiB), invalid_grant (a pilot credential), invalid_target, invalid_scope, unauthorized_client (the policy refuses the caller, or a revocation blocks it) or unsupported_grant_type (RFC 6749 §5.2, RFC 8693 §2.2.2).',
      403: 'access_denied: IAM refused the exchange behind a narrowed access token.',
      429: 'slow_down: a configured rate limit (caller, role or client address) is used up (Retry-After).',
      503: 'temporarily_unavailable: IAM unreachable, or the audit log busy or out of reach (Retry-After); no token.',
    },
  },
  {
    method: 'get', path: '/v1/audit', mount: 'admin', operationId: 'queryAudit', tags: ['admin'], security: 'admin',
    summary: 'Audit records, filtered, newest first, keyset-paged',
    query: AuditQueryParams,
    responses: { 200: { description: 'One page of records; `next_cursor` when there are more.', content: json(AuditPage) } },
    errors: { 400: 'invalid_request: a bad or unknown parameter.', ...ADMIN_ERRORS },
  },
  {
    method: 'post', path: '/v1/revocations', mount: 'admin', operationId: 'revoke', tags: ['admin'], security: 'admin',
    summary: 'Revoke tokens by exactly one selector (jti, sub, role, site, client, pilot-job or pilot-enrolment)',
    body: { contentType: 'application/json', schema: RevocationBody, required: true },
    responses: {
      200: { description: '`dry_run`: how many live tokens the revocation would match; nothing stored.', content: json(RevocationDryRun) },
      201: { description: 'The revocation, recorded in the audit log in the same transaction.', content: json(RevocationCreated) },
    },
    errors: { 400: 'invalid_request: not JSON, an unknown field, or not exactly one selector.', ...ADMIN_WRITE_ERRORS },
  },
  {
    method: 'get', path: '/v1/revocations', mount: 'admin', operationId: 'listRevocations', tags: ['admin'], security: 'admin',
    summary: 'Revocations in force (all=true: lifted and expired ones too)',
    query: RevocationListQuery,
    responses: { 200: { description: 'The revocations.', content: json(RevocationList) } },
    errors: { 400: 'invalid_request: all must be true or false.', ...ADMIN_ERRORS },
  },
  {
    method: 'delete', path: '/v1/revocations/{id}', mount: 'admin', operationId: 'liftRevocation', tags: ['admin'], security: 'admin',
    summary: 'Lift a revocation before its end (audited as token.unrevoked)',
    params: RevocationIdParam,
    body: { contentType: 'application/json', schema: LiftBody, required: false },
    responses: { 200: { description: 'The lifted revocation.', content: json(RevocationCreated) } },
    errors: { 400: 'invalid_request: a bad body.', 404: 'invalid_request: no such revocation.', ...ADMIN_WRITE_ERRORS },
  },
  {
    method: 'get', path: '/v1/revocations/condor', mount: 'admin', operationId: 'condorRevocationExpression', tags: ['admin'], security: 'admin',
    summary: 'SEC_TOKEN_REVOCATION_EXPR for HTCondor daemons, as a config snippet or JSON',
    query: CondorExpressionQuery,
    responses: {
      200: {
        description: 'format=config (default): an HTCondor config snippet; format=json: the expression and its parts.',
        content: { 'text/plain': z.string(), 'application/json': CondorExpressionJson },
      },
    },
    errors: { 400: 'invalid_request: format must be config or json.', ...ADMIN_ERRORS },
  },
  {
    method: 'get', path: '/v1/pilots', mount: 'admin', operationId: 'livePilots', tags: ['admin'], security: 'admin',
    summary: 'Live SLURM pilots by site and job, with their last renewal',
    query: PilotsQuery,
    responses: { 200: { description: 'The live pilots.', content: json(LivePilots) } },
    errors: { 400: 'invalid_request: site must be a site label.', ...ADMIN_ERRORS },
  },
  {
    method: 'post', path: '/admin/policy/explain', mount: 'policy', operationId: 'explainPolicy', tags: ['admin'], security: 'admin',
    summary: 'Which policy rule would allow or deny a request, and why',
    body: { contentType: 'application/json', schema: ExplainBody, required: true },
    responses: { 200: { description: 'The decision and every rule\'s trace.', content: json(PolicyExplanation) } },
    errors: { 400: 'invalid_request: the body is not a valid explain request.', ...ADMIN_ERRORS },
  },
  {
    method: 'get', path: '/v1/ca/certificate', mount: 'certificates', operationId: 'poolCaCertificate', tags: ['pool CA'],
    summary: 'The pool CA certificate (PEM) that every host certificate chains to',
    responses: { 200: { description: 'The CA certificate.', content: { 'application/x-pem-file': z.string() } } },
    errors: {},
  },
  {
    method: 'get', path: '/v1/ca/crl', mount: 'certificates', operationId: 'poolCaCrl', tags: ['pool CA'],
    summary: 'The certificate revocation list of the pool CA (PEM), built from the audit log',
    responses: { 200: { description: 'The CRL.', content: { 'application/x-pem-file': z.string() } } },
    errors: {},
  },
  {
    method: 'post', path: '/v1/certificates', mount: 'certificates', operationId: 'issueCertificate', tags: ['pool CA'], security: 'iam',
    summary: 'A host certificate for HTCondor SSL authentication, signed by the pool CA under policy',
    description: 'The bearer is the caller\'s IAM access token (not necessarily an admin): a grant with a `certificate:` block decides. The client keeps its key and sends a CSR; `dry_run` answers what the policy would decide and signs nothing.',
    body: { contentType: 'application/json', schema: CertificateBody, required: true },
    responses: {
      200: { description: 'dry_run: the policy\'s answer.', content: json(z.object({ dry_run: z.record(z.string(), z.unknown()) })) },
      201: {
        description: 'The certificate, its serial (recorded in the audit) and the CA certificate.',
        content: json(z.object({ certificate: z.string(), serial: z.string(), not_before: z.number().int().describe('epoch seconds'), not_after: z.number().int().describe('epoch seconds'), ca_certificate: z.string() })),
      },
    },
    errors: {
      400: 'invalid_request: a bad body or CSR.',
      401: 'invalid_token: no, a bad or a revoked IAM access token.',
      403: 'access_denied or unauthorized_client: the policy refuses this role, site, name or lifetime.',
      429: 'slow_down: a configured rate limit (caller, role or client address, shared with POST /token) is used up (Retry-After).',
      503: 'temporarily_unavailable: IAM or the audit log unavailable (Retry-After).',
    },
  },
  {
    method: 'delete', path: '/v1/certificates/{serial}', mount: 'certificates-admin', operationId: 'revokeCertificate', tags: ['pool CA'], security: 'admin',
    summary: 'Revoke a host certificate by serial (audited; published in the CRL)',
    params: z.object({ serial: z.string() }),
    body: { contentType: 'application/json', schema: CertificateRevokeBody, required: false },
    responses: {
      200: { description: 'Already revoked.', content: json(z.object({ serial: z.string(), revoked_at: z.number().int(), not_after: z.number().int() })) },
      201: { description: 'Revoked now.', content: json(z.object({ serial: z.string(), revoked_at: z.number().int(), not_after: z.number().int() })) },
    },
    errors: { 400: 'invalid_request: a bad serial or body.', 404: 'invalid_request: no certificate with this serial.', ...ADMIN_WRITE_ERRORS },
  },
  {
    method: 'get', path: '/v1/audit/summary', mount: 'admin', operationId: 'auditSummary', tags: ['admin'], security: 'admin',
    summary: 'Issuances, renewals and denials per hour or day, split by role, site and token kind; denials by reason; live tokens',
    query: AuditSummaryParams,
    responses: { 200: { description: 'The counts (at most 400 buckets).', content: json(z.record(z.string(), z.unknown())) } },
    errors: { 400: 'invalid_request: a bad range or bucket.', ...ADMIN_ERRORS },
  },
  ...credentialRoutes(),
  ...consolePages(),
]

/**
 * The audit console's HTML pages (docs/console.md). They answer HTML, not JSON, never cached: a request
 * without a session is sent to the sign-in page (GET) or refused (POST), a non-admin is refused, every POST
 * needs the session's CSRF token and the broker's own Origin, and a form over 64 KiB is refused. A form
 * body that does not parse is the API's invalid_request (JSON).
 */
function consolePages(): RouteSpec[] {
  const html = (description: string, headers: Record<string, HeaderSpec> = {}): ResponseSpec => ({
    description, content: { 'text/html': z.string() }, headers: { 'Cache-Control': CACHE_CONTROL_NO_STORE, ...headers },
  })
  const redirect = (description: string): ResponseSpec => ({ description, headers: { 'Cache-Control': CACHE_CONTROL_NO_STORE, Location: LOCATION } })
  const unreadableForm: ResponseSpec = {
    description: 'invalid_request: the form could not be read (OAuth error JSON); or a page naming what is wrong with the form.',
    content: { 'application/json': OAuthError, 'text/html': z.string() }, headers: oauthErrorHeaders(400),
  }
  const tooLarge = html('The form is larger than 64 KiB.')
  const unavailable = html('IAM could not be asked about the admin\'s token, or could not start a sign-in; Retry-After as the API\'s temporarily_unavailable for the same cause.', { 'Retry-After': RETRY_AFTER })
  /** A form that revokes: its audited write fails closed, answered as the admin API answers it. */
  const unavailableOrStore: ResponseSpec = {
    description: 'A page: IAM could not be asked about the admin\'s token. The OAuth error temporarily_unavailable (JSON): the audit store is out of reach or busy, so nothing was revoked. Both with Retry-After.',
    content: { 'text/html': z.string(), 'application/json': OAuthError }, headers: oauthErrorHeaders(503),
  }
  const slowDown = html('The client address limit is used up by refused sign-ins.', { 'Retry-After': RETRY_AFTER })
  const refused = (why: string) => html(`Refused: ${why}.`)
  type Page = Pick<RouteSpec, 'responses' | 'errors'>
  /** A page behind the session check (middleware/console_session.ts). */
  const signedIn = (method: 'get' | 'post', own: Page['errors'] = {}, ok: Page['responses'] = { 200: html('The page.') }): Page => ({
    responses: method === 'get' ? { ...ok, 303: redirect('No session: to the sign-in page.') } : ok,
    errors: {
      ...(method === 'post' ? { 400: unreadableForm, 413: tooLarge } : {}),
      403: refused(method === 'get' ? 'no longer an admin' : 'no session, not an admin, or a missing or bad CSRF token'),
      503: unavailable,
      ...own,
    },
  })
  const page = (method: 'get' | 'post', path: string, operationId: string, summary: string, p: Page): RouteSpec => ({
    method, path, mount: 'console', operationId, tags: ['console'], summary,
    ...(path.includes('{seq}') ? { params: z.object({ seq: z.string() }) } : {}),
    ...(method === 'post' ? { body: { contentType: 'application/x-www-form-urlencoded', schema: z.record(z.string(), z.string()), required: false } } : {}),
    ...p,
  })
  const notConfigured = html('Sign-in through IAM is not configured.')
  return [
    page('get', '/console/static/console.css', 'consoleStyle', 'The console\'s style sheet (served by the broker: no CDN)', { responses: { 200: { description: 'CSS.', content: { 'text/css': z.string() } } }, errors: {} }),
    page('get', '/console/sign-in', 'consoleSignInPage', 'The sign-in page: IAM or the bootstrap admin token', { responses: { 200: html('The sign-in page.') }, errors: {} }),
    page('get', '/console/login', 'consoleLogin', 'Starts the OpenID Connect authorization code flow with PKCE at IAM', {
      responses: { 303: redirect('To IAM\'s authorization endpoint.') },
      errors: { 404: notConfigured, 503: unavailable },
    }),
    page('get', '/console/callback', 'consoleCallback', 'Where IAM returns the authorization code', {
      responses: { 200: html('Signed in: a page that continues to the console.') },
      errors: { 400: html('The sign-in is unknown or expired, or IAM refused it.'), 403: refused('not an admin'), 404: notConfigured, 429: slowDown, 503: unavailable },
    }),
    page('post', '/console/sign-in/token', 'consoleSignInToken', 'Sign in with the bootstrap admin token', {
      responses: { 200: html('Signed in: a page that continues to the console.') },
      errors: { 400: unreadableForm, 403: refused('not an admin token, or a missing or bad CSRF token'), 413: tooLarge, 429: slowDown, 503: unavailable },
    }),
    page('post', '/console/sign-out', 'consoleSignOut', 'Ends the session', {
      responses: {
        200: html('After an IAM sign-in, when IAM advertises end_session_endpoint: a page that moves on to it (OpenID Connect RP-Initiated Logout 1.0).'),
        303: redirect('To the sign-in page.'),
      },
      errors: { 400: unreadableForm, 403: refused('a missing or bad CSRF token'), 413: tooLarge },
    }),
    page('get', '/console', 'consoleOverview', 'Overview: issuance and denials over time, live tokens, the chain\'s status', signedIn('get')),
    page('post', '/console/verify', 'consoleVerify', 'Verifies the audit chain now', signedIn('post', {}, { 303: redirect('Back to the overview.') })),
    page('get', '/console/search', 'consoleSearch', 'Search audit records by jti, sub, caller, site, role, request id, time', signedIn('get', { 400: html('The search form, naming the bad field.') })),
    page('get', '/console/records/{seq}', 'consoleRecord', 'One audit record, its chain position and whether it verifies', signedIn('get', { 404: html('No audit record with this number.') })),
    page('get', '/console/pilots', 'consolePilots', 'Live SLURM pilots by site and job, with their last renewal', signedIn('get')),
    page('get', '/console/credentials', 'consoleCredentials', 'Users\' stored job credentials with their last refresh', signedIn('get')),
    page('post', '/console/credentials/revoke', 'consoleCredentialRevoke', 'Revoke a user\'s stored job credential (a confirmation first)', signedIn('post', { 404: html('No unrevoked credential for this user and provider.'), 503: unavailableOrStore })),
    page('get', '/console/act', 'consoleAct', 'Revoke, explain a policy decision, key status', signedIn('get')),
    page('post', '/console/act/revoke', 'consoleRevoke', 'Revoke (a dry-run count first, then a confirmation)', signedIn('post', { 503: unavailableOrStore })),
    page('post', '/console/act/explain', 'consoleExplain', 'The policy explain form', signedIn('post')),
  ]
}

/**
 * Users' job credentials (docs/job-credentials.md). The Vault-compatible read lives on its own listener and
 * answers as Vault does, so it is not part of this document.
 */
function credentialRoutes(): RouteSpec[] {
  const userProvider = z.object({ user: z.string(), provider: z.string() })
  const credentialError = { 400: 'invalid_request: a bad name, query or body.', 401: 'invalid_token: no or a bad bearer token.' } as const
  return [
    {
      method: 'post', path: '/v1/credentials', mount: 'credentials', operationId: 'registerCredential', tags: ['credentials'], security: 'iam',
      summary: 'Register the caller\'s job credential for a provider (HTCondor\'s credential storer calls this at condor_submit)',
      description: 'The bearer is the user\'s IAM access token; the HTCondor user, scopes and audience come from the policy. The broker exchanges at IAM with offline_access and keeps the refresh token sealed (AES-256-GCM). The answer carries the `.top` content for the credd.',
      body: { contentType: 'application/json', schema: RegisterCredentialRequest, required: true },
      responses: { 201: { description: 'Registered: user, provider and the .top content.', content: json(z.record(z.string(), z.unknown())), headers: NO_STORE_HEADERS } },
      errors: { ...credentialError, 403: 'access_denied: the policy grants no job credential here, or the user already holds credentials.max_per_user of them.', 429: 'slow_down: rate_limits.registration for this caller, or the client address limit, is used up (Retry-After).', 503: 'temporarily_unavailable: IAM or the audit log unavailable, or another registration of the same credential landed at the same moment (Retry-After).' },
    },
    {
      method: 'get', path: '/v1/credentials', mount: 'credentials', operationId: 'listCredentials', tags: ['credentials', 'admin'], security: 'admin',
      summary: 'Stored job credentials (no secrets)',
      responses: { 200: { description: 'The credentials.', content: json(z.object({ credentials: z.array(z.record(z.string(), z.unknown())) })) } },
      errors: { ...ADMIN_ERRORS },
    },
    {
      method: 'get', path: '/v1/credentials/{user}/{provider}/token', mount: 'credentials', operationId: 'jobToken', tags: ['credentials'], security: 'credd',
      summary: 'A fresh access token for one user\'s jobs (our credmon calls this)',
      description: 'The bearer is the access point\'s credd IDTOKEN issued by this broker. A cached token with at least minimum_seconds left is reused; concurrent requests share one refresh. HEAD is refused (405, Allow: GET): its answer would be a token made and audited only to be dropped.',
      params: userProvider, query: TokenQuery, getMints: true,
      responses: { 200: { description: 'The job token.', content: json(z.object({ access_token: z.string(), token_type: z.literal('Bearer'), expires_in: z.number().int(), scope: z.string() })), headers: NO_STORE_HEADERS } },
      errors: {
        ...credentialError,
        403: {
          description: 'access_denied: the credential is unknown, revoked or outdated (then `credential` says which: the credmon removes .use and .top, and the next submit registers again), or the policy refuses (fetched_by, grant, a revoked identity: no `credential`; the credmon removes .use and keeps .top).',
          content: json(JobTokenRefusal),
          headers: oauthErrorHeaders(403),
        },
        503: 'temporarily_unavailable: IAM or the audit log unavailable (Retry-After).',
      },
    },
    {
      method: 'delete', path: '/v1/credentials/{user}/{provider}', mount: 'credentials', operationId: 'revokeCredential', tags: ['credentials', 'admin'], security: 'admin',
      summary: 'Revoke a stored job credential (audited; the refresh token is also revoked at IAM)',
      params: userProvider,
      responses: { 200: { description: 'Revoked.', content: json(z.object({ revoked: z.object({ user: z.string(), provider: z.string() }) })) } },
      errors: { 400: 'invalid_request: user or provider is not a valid name.', 404: 'invalid_request: no unrevoked credential for this user and provider.', ...ADMIN_WRITE_ERRORS },
    },
  ]
}
