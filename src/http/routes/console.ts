import { randomBytes } from 'node:crypto'
import { Hono, type Context } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import type { AuditQuery, AuditStore } from '../../audit/audit_log.ts'
import type { AuditAggregates } from '../../audit/aggregate.ts'
import { auditOverview } from '../../audit/overview.ts'
import { checkRecordInChain } from '../../audit/record_check.ts'
import type { ChainStatus } from '../../console/chain_status.ts'
import { CONSOLE_CSS } from '../../console/console_css.ts'
import type { ConsoleSignIn } from '../../console/oidc_sign_in.ts'
import { actPage, type ExplainForm, type RevokeForm } from '../../console/pages/act_page.ts'
import { credentialsPage, type CredentialRevokeForm } from '../../console/pages/credentials_page.ts'
import { overviewPage } from '../../console/pages/overview_page.ts'
import { pilotsPage } from '../../console/pages/pilots_page.ts'
import { recordPage, SEARCH_FIELDS, searchPage, type SearchForm } from '../../console/pages/search_page.ts'
import { continuePage, leavingPage, messagePage, signInPage } from '../../console/pages/sign_in_page.ts'
import { PENDING_SECONDS, sameToken, type ConsoleSessions, type PendingSignIn } from '../../console/sessions.ts'
import { parseProvider, parseUser } from '../../contract/job_credentials.ts'
import { credentialActivity } from '../../credentials/credential_activity.ts'
import type { CredentialService } from '../../credentials/credential_service.ts'
import { AuditStoreUnavailable, BrokerError, InvalidRequest, InvalidToken, SlowDown, TemporarilyUnavailable } from '../../errors.ts'
import { logStoreOutage } from '../oauth_error_response.ts'
import { listLivePilots, type LiveWindow } from '../../issuance/pilot_list.ts'
import type { KeyStatus } from '../../keys/key_status.ts'
import type { Clock } from '../../lib/clock.ts'
import type { Logger } from '../../lib/logger.ts'
import { explain } from '../../policy/explain.ts'
import { REVOCATION_KINDS, type RevocationKind } from '../../revocation/revocation.ts'
import type { RevocationService } from '../../revocation/revocation_service.ts'
import { clientAddress } from '../client_address.ts'
import { authenticateAdmin, type AdminAuthOptions } from '../middleware/admin_auth.ts'
import { classifyIamFailure, TRANSPORT_CAUSES } from '../../iam/iam_failure.ts'
import { answeredStatus } from '../../iam/iam_errors.ts'
import { limitBody } from '../middleware/body_limit.ts'
import { consoleHeaders, consoleSession, csrfRefused, formOfSession, NO_ORIGIN_MESSAGE, readConsoleForm, sameOrigin, SESSION_COOKIE, tooManyPage, unavailablePage } from '../middleware/console_session.ts'
import { summaryRange } from './audit.ts'
import { decisionRequestFrom, ExplainBody, withRevocationBlocks, type PolicySource } from './policy_explain.ts'

/**
 * The sign-in in progress (state, PKCE verifier, nonce), kept in this browser's own cookie rather than in
 * the broker: anyone may start sign-ins, and a table of them could be flooded until the one a real admin
 * is in the middle of is pushed out. HttpOnly, Secure, sent only to us. Lax, because IAM's redirect back
 * to the callback is a cross-site navigation.
 */
const LOGIN_COOKIE = '__Host-ctb-console-login'

/**
 * A failed code redemption that is IAM's trouble, not the client's: IAM unreachable or silent, or answering
 * 5xx (its proxy's 502 page, a 503 temporarily_unavailable). openid-client puts that status on the error
 * (an OAuth error body) or on the Response it leaves as the cause (any other body).
 */
function iamTrouble(err: unknown): boolean {
  if (err instanceof BrokerError) return err.status >= 500
  if (TRANSPORT_CAUSES.has(classifyIamFailure(err).cause)) return true
  // An OAuth error body carries its status on the error; any other answer on its Response (answeredStatus).
  const own = (err as { status?: unknown } | undefined)?.status
  const status = typeof own === 'number' ? own : answeredStatus(err)
  return status !== undefined && status >= 500
}
/** Double-submit token of the bootstrap-token form (no session exists yet to hold one). */
const PRE_COOKIE = '__Host-ctb-console-pre'
/** The console's forms are a few fields; the sign-in form is read before anyone is signed in. */
const MAX_FORM_BYTES = 64 * 1024

export interface ConsoleDeps {
  audit: Pick<AuditStore, 'query' | 'scan' | 'scanStored' | 'macVerdict' | 'verify'> & AuditAggregates
  revocations: Pick<RevocationService, 'revoke' | 'preview' | 'list' | 'callerBlock' | 'blockedIdentity'>
  policy?: PolicySource
  /** Users' job credentials, when enabled: the service GET and DELETE /v1/credentials use. */
  credentials?: Pick<CredentialService, 'list' | 'revoke'>
  auth: AdminAuthOptions
  /** Sign-in through IAM; absent: only the bootstrap token signs in. */
  signIn?: ConsoleSignIn
  sessions: ConsoleSessions
  chain: ChainStatus
  keys: () => KeyStatus
  clock: Clock
  log: Logger
  /** The broker's public origin (from its issuer URL): POSTs must come from it. */
  origin: string
  /** Longest console session; an IAM sign-in also ends when its access token expires. */
  sessionSeconds: number
  /** The session cookie carries Max-Age (sessionSeconds) and outlives the browser; otherwise it ends with it. */
  persistentCookie: boolean
  /** How far back live tokens and pilots are looked for. */
  liveWindow: LiveWindow
}

const Text = (v: unknown) => (typeof v === 'string' ? v.trim() : '')

/**
 * The web console at /console: server-rendered pages over the services the admin API uses (audit
 * queries and aggregates, revocation, policy explain, pilots). A thin edge: parse the form, call the
 * core, render. No script anywhere (see CONSOLE_CSP); every audit value is escaped by the templates.
 */
export function consoleRoutes(deps: ConsoleDeps): Hono {
  const app = new Hono()
  const now = () => deps.clock.now()
  // A store read the broker cannot make right now (the session every request starts with, a page's records)
  // is a 503 page with Retry-After, as IAM down is, not the admin API's JSON in the browser. Logged once,
  // as the API logs it; anything else goes on to the broker's handler.
  app.onError((err, c) => {
    if (!(err instanceof AuditStoreUnavailable)) throw err
    logStoreOutage(err, deps.log, c.get('requestId'), c.get('clientRequestId'))
    c.set('errorCode', err.error)
    return unavailablePage(c, err, ['/console', 'Try again'])
  })
  const cookie = { httpOnly: true, secure: true, path: '/' } as const
  app.use('/console', consoleHeaders())
  app.use('/console/*', consoleHeaders())
  app.use('/console/*', limitBody(MAX_FORM_BYTES, (c) => c.html(messagePage('Refused', `The form is larger than ${MAX_FORM_BYTES} bytes.`), 413)))

  app.get('/console/static/console.css', (c) => {
    c.header('Content-Type', 'text/css; charset=utf-8')
    return c.body(CONSOLE_CSS)
  })

  // --- sign-in -------------------------------------------------------------------------------------
  app.get('/console/sign-in', (c) => {
    const pre = randomBytes(32).toString('base64url')
    setCookie(c, PRE_COOKIE, pre, { ...cookie, sameSite: 'Strict', maxAge: PENDING_SECONDS })
    const status = c.req.query('signed-out') !== undefined ? 'Signed out.' : undefined
    return c.html(signInPage({ iam: deps.signIn !== undefined, preCsrf: pre, ...(status ? { status } : {}) }))
  })

  app.get('/console/login', async (c) => {
    if (!deps.signIn) return c.html(messagePage('Not configured', 'Sign-in through IAM is not configured for this broker.'), 404)
    let start
    try {
      start = await deps.signIn.start()
    } catch (err) {
      // IAM unreachable (discovery): say so on a page, not as the API's JSON.
      if (err instanceof TemporarilyUnavailable) return unavailablePage(c, err, ['/console/sign-in', 'Back'])
      throw err
    }
    const pending: PendingSignIn = { state: start.state, codeVerifier: start.codeVerifier, nonce: start.nonce, expiresAt: now() + PENDING_SECONDS }
    setCookie(c, LOGIN_COOKIE, Buffer.from(JSON.stringify(pending)).toString('base64url'), { ...cookie, sameSite: 'Lax', maxAge: PENDING_SECONDS })
    return c.redirect(start.url, 303)
  })

  app.get('/console/callback', async (c) => {
    if (!deps.signIn) return c.html(messagePage('Not configured', 'Sign-in through IAM is not configured for this broker.'), 404)
    const state = c.req.query('state') ?? ''
    const bound = getCookie(c, LOGIN_COOKIE)
    deleteCookie(c, LOGIN_COOKIE, { path: '/', secure: true })
    // The state must be the one this browser was given (login CSRF), and not expired; the cookie is gone
    // after this request, and IAM redeems a code once.
    const pending = pendingSignIn(bound, state, now())
    if (!pending) return c.html(messagePage('Sign-in failed', 'This sign-in is unknown or has expired; start again.'), 400)
    const iamError = c.req.query('error')
    if (iamError !== undefined) return c.html(messagePage('Sign-in failed', `IAM refused the sign-in: ${iamError}`), 400)
    // The pending sign-in is a cookie any client can make up, and redeeming its code is a request to IAM:
    // a code IAM refuses counts against the address, and a blocked address is refused before IAM is asked.
    const address = clientAddress(c).clientAddress
    const blocked = deps.auth.limits?.blockedAddress(address)
    if (blocked) return tooManyPage(c, blocked)
    let tokens: { accessToken: string; expiresAt?: number; idToken?: string }
    try {
      tokens = await deps.signIn.finish(new URL(c.req.url).searchParams, { ...pending, state })
    } catch (err) {
      deps.log.warn('console sign-in at IAM failed', { err })
      // Only IAM's refusal of the code counts: an IAM the broker cannot reach is not the client's doing.
      if (!iamTrouble(err)) deps.auth.limits?.noteRefused(address)
      return c.html(messagePage('Sign-in failed', 'The sign-in could not be completed at IAM; start again.'), 400)
    }
    return startSession(c, tokens.accessToken, tokens.expiresAt, tokens.idToken)
  })

  app.post('/console/sign-in/token', async (c) => {
    const form = await readConsoleForm(c)
    const pre = getCookie(c, PRE_COOKIE)
    if (!sameOrigin(c.req.header('origin'), deps.origin) || pre === undefined || !sameToken(pre, Text(form.csrf))) {
      const message = c.req.header('origin') === undefined ? NO_ORIGIN_MESSAGE : 'This form did not come from the sign-in page (CSRF check failed); reload it and try again.'
      return c.html(messagePage('Refused', message), 403)
    }
    const token = Text(form.token)
    if (!/^[\x21-\x7e]{1,8192}$/.test(token)) return c.html(messagePage('Refused', 'Not an admin token.'), 403)
    return startSession(c, token, undefined)
  })

  /** Admits the bearer exactly as the admin API would, then opens a session. */
  async function startSession(c: Context, bearer: string, expiresAt: number | undefined, idToken?: string) {
    let principal
    try {
      principal = await authenticateAdmin(bearer, deps.auth, clientAddress(c).clientAddress)
    } catch (err) {
      if (err instanceof InvalidToken) return c.html(messagePage('Refused', 'You are not an admin of this broker: the policy grants you no admin role, or your token is not valid here.'), 403)
      // The address limit: a page, as the callback's, not the admin API's JSON in the browser.
      if (err instanceof SlowDown) return tooManyPage(c, err)
      if (err instanceof TemporarilyUnavailable) return unavailablePage(c, err)
      throw err
    }
    // The session this browser held ends here: a sign-in leaves one live session per browser, not an
    // earlier cookie (another admin's at a shared desk, or one copied before) valid for its full term.
    await deps.sessions.delete(getCookie(c, SESSION_COOKIE))
    const t = now()
    const { id } = await deps.sessions.create({ bearer, ...(idToken !== undefined ? { idToken } : {}), principal: principal.id, expiresAt: Math.min(t + deps.sessionSeconds, expiresAt ?? Infinity) }, t)
    // A session cookie by default (no Max-Age or Expires, RFC 6265 §4.1.2.1-2): closing the browser ends it
    // at a shared desk. The server enforces the idle and absolute limits whatever the cookie says.
    setCookie(c, SESSION_COOKIE, id, { ...cookie, sameSite: 'Strict', ...(deps.persistentCookie ? { maxAge: deps.sessionSeconds } : {}) })
    deps.log.info('console sign-in', { principal: principal.id, via: principal.via })
    return c.html(continuePage('/console'))
  }

  // --- signed-in pages -------------------------------------------------------------------------------
  const session = consoleSession({ sessions: deps.sessions, auth: deps.auth, origin: deps.origin, now })
  for (const path of ['/console', '/console/search', '/console/records/*', '/console/pilots', '/console/credentials', '/console/credentials/*', '/console/act', '/console/act/*', '/console/verify']) app.use(path, session)

  // Not behind the admin check: ending a session must not wait for IAM (unreachable, or the admin grant
  // gone), or the session would outlive the sign-out and be honoured again once IAM answers. The origin and
  // the session's CSRF token still guard it, and the cookie is cleared only on a request that carried it,
  // so no other site can sign an admin out.
  // The console session ends first; then, for an IAM sign-in whose IAM advertises end_session_endpoint, the
  // browser goes on to end its IAM session too (OpenID Connect RP-Initiated Logout 1.0). If IAM cannot be
  // asked, the console's own sign-out stands, as before.
  app.post('/console/sign-out', async (c) => {
    const id = getCookie(c, SESSION_COOKIE)
    // Idle or expired sessions too: the idle limit ended the console session, not the admin's IAM session,
    // which this sign-out is expected to end as well. Only a form carrying the session's CSRF token sends
    // the browser to IAM; without it a live session stays (403), a dead one is removed here as get() would.
    const ending = await deps.sessions.forSignOut(id, now())
    const proven = ending !== undefined && await formOfSession(c, ending.csrf, deps.origin)
    if (ending?.live && !proven) return csrfRefused(c)
    if (ending?.live) await deps.sessions.delete(id)
    else await deps.sessions.delete(id).catch(() => {})
    // Cleared only when the browser sent it, which for a SameSite=Strict cookie means a same-site request: a
    // cross-site form post arrives without it, yet a Set-Cookie on a top-level navigation's answer is
    // stored whatever the SameSite (RFC 6265bis §5.7), so clearing it there would let any site sign the
    // admin out.
    if (id !== undefined) deleteCookie(c, SESSION_COOKIE, { path: '/', secure: true })
    const atIam = proven && ending.idToken !== undefined ? await iamSignOut(ending.idToken) : undefined
    // A page that moves on, not a redirect: browsers hold a form post redirected to another origin to the
    // page's CSP form-action ('self'), and would stop it.
    if (atIam) return c.html(leavingPage(atIam))
    return c.redirect('/console/sign-in?signed-out', 303)
  })

  /** IAM's end-session URL for this ID token, or undefined (no endpoint advertised, IAM unreachable). */
  async function iamSignOut(idToken: string): Promise<string | undefined> {
    if (!deps.signIn?.endSession) return undefined
    try {
      return await deps.signIn.endSession(idToken)
    } catch (err) {
      deps.log.warn('console sign-out: IAM logout could not be prepared; signed out of the console only', { err })
      return undefined
    }
  }

  app.get('/console', async (c) => {
    const bucket = c.req.query('bucket') === 'day' ? 'day' : 'hour'
    const t = now()
    const overview = await auditOverview(deps.audit, { ...summaryRange({ bucket }, t), now: t, maxTokenLifetime: await deps.liveWindow() })
    const chain = await deps.chain.view({ waitMs: 2000 })
    return c.html(overviewPage({ overview, chain, viewer: c.get('consoleViewer'), bucket }))
  })

  app.post('/console/verify', async (c) => {
    await deps.chain.view({ force: true, waitMs: 2000 })
    return c.redirect('/console', 303)
  })

  app.get('/console/search', async (c) => {
    const form: SearchForm = {}
    for (const k of SEARCH_FIELDS) { const v = c.req.query(k); if (v) form[k] = v }
    const viewer = c.get('consoleViewer')
    if (Object.keys(form).length === 0) return c.html(searchPage({ viewer, form }))
    try {
      const result = await deps.audit.query(searchQuery(form, c.req.query('cursor')))
      return c.html(searchPage({ viewer, form, result }))
    } catch (err) {
      if (err instanceof BrokerError && err.status === 400) return c.html(searchPage({ viewer, form, error: err.description }), 400)
      throw err
    }
  })

  app.get('/console/records/:seq', async (c) => {
    const seq = /^[1-9]\d{0,14}$/.test(c.req.param('seq')) ? Number(c.req.param('seq')) : 0
    const check = seq > 0 ? await checkRecordInChain(deps.audit, seq) : undefined
    if (!check) return c.html(messagePage('Not found', 'No audit record with this number (it may have been pruned).', { link: ['/console/search', 'Search'] }), 404)
    return c.html(recordPage({ viewer: c.get('consoleViewer'), check }))
  })

  app.get('/console/pilots', async (c) => {
    const t = now()
    return c.html(pilotsPage({ viewer: c.get('consoleViewer'), pilots: await listLivePilots(deps.audit, t, await deps.liveWindow()), now: t }))
  })

  /**
   * The list a page shows under a change that has just committed. A store outage on that read leaves the list
   * out (undefined) and the page still says the change was made: the 503 page's "nothing was issued or
   * changed" would be false, and its "Try again" revokes a second time.
   */
  async function listedAfterCommit<T>(read: () => Promise<T>, what: string, requestId: string | undefined): Promise<T | undefined> {
    try {
      return await read()
    } catch (err) {
      if (!(err instanceof AuditStoreUnavailable)) throw err
      deps.log.warn(`${what} committed; the console could not read the list to show under it`, { err, requestId })
      return undefined
    }
  }

  async function credentials(c: Context, extra: Omit<Parameters<typeof credentialsPage>[0], 'viewer' | 'now' | 'enabled' | 'credentials'> = {}, status: 200 | 400 | 404 = 200) {
    const read = async () => credentialActivity(deps.credentials ? await deps.credentials.list() : [], deps.audit)
    const list = extra.done
      ? await listedAfterCommit(read, `the revocation of credential ${extra.done.user}/${extra.done.provider}`, c.get('requestId'))
      : await read()
    return c.html(credentialsPage({ viewer: c.get('consoleViewer'), now: now(), enabled: deps.credentials !== undefined, credentials: list, ...extra }), status)
  }

  app.get('/console/credentials', (c) => credentials(c))

  // Step one asks for a confirmation (nothing changes); step two (confirm=yes) revokes through the
  // service DELETE /v1/credentials/{user}/{provider} uses, audited as credential.revoked with the admin as actor.
  app.post('/console/credentials/revoke', async (c) => {
    const f = await readConsoleForm(c)
    const form: CredentialRevokeForm = { user: Text(f.user), provider: Text(f.provider), ...(Text(f.reason) ? { reason: Text(f.reason) } : {}) }
    if (!deps.credentials) return credentials(c, { error: 'job credentials are not enabled on this broker' }, 400)
    const user = parseUser(form.user)
    const provider = parseProvider(form.provider)
    if (!user || !provider) return credentials(c, { error: 'user or provider is not a valid name' }, 400)
    if ((form.reason ?? '').length > 500) return credentials(c, { confirm: form, error: 'the reason is longer than 500 characters' }, 400)
    if (Text(f.confirm) !== 'yes') return credentials(c, { confirm: form })
    const done = await deps.credentials.revoke(user, provider, `admin:${c.get('admin').id}`, { requestId: c.get('requestId'), ...(form.reason ? { reason: form.reason } : {}) })
    if (!done) return credentials(c, { error: `no unrevoked credential for ${user}/${provider}` }, 404)
    return credentials(c, { done: { user, provider } })
  })

  async function act(c: Context, extra: Omit<Parameters<typeof actPage>[0], 'viewer' | 'now' | 'keys' | 'revocations'>, status: 200 | 400 = 200) {
    const t = now()
    const read = () => deps.revocations.list({ all: false })
    const revocations = extra.done ? await listedAfterCommit(read, `revocation ${extra.done.id}`, c.get('requestId')) : await read()
    return c.html(actPage({ viewer: c.get('consoleViewer'), now: t, keys: deps.keys(), revocations, ...extra }), status)
  }

  app.get('/console/act', (c) => {
    const kind = c.req.query('kind')
    const value = c.req.query('value')
    return act(c, { revoke: { ...(kind ? { kind } : {}), ...(value ? { value } : {}) } })
  })

  // Step one: a dry run (count only, nothing stored); step two (confirm=yes): the revocation itself,
  // through the service the admin API uses, audited in the same transaction.
  app.post('/console/act/revoke', async (c) => {
    const f = await readConsoleForm(c)
    const revoke: RevokeForm = { kind: Text(f.kind), value: Text(f.value), ...(Text(f.iss) ? { iss: Text(f.iss) } : {}), ...(Text(f.reason) ? { reason: Text(f.reason) } : {}) }
    try {
      if (!REVOCATION_KINDS.includes(revoke.kind as RevocationKind)) throw new InvalidRequest(`choose one of ${REVOCATION_KINDS.join(', ')}`)
      if (!revoke.value) throw new InvalidRequest('a value is required')
      if ((revoke.reason ?? '').length > 500) throw new InvalidRequest('the reason is longer than 500 characters')
      const req = { kind: revoke.kind as RevocationKind, value: revoke.value!, ...(revoke.iss ? { iss: revoke.iss } : {}), ...(revoke.reason ? { reason: revoke.reason } : {}) }
      if (Text(f.confirm) !== 'yes') return act(c, { revoke, preview: await deps.revocations.preview(req) })
      const done = await deps.revocations.revoke(req, { principal: c.get('admin').id, requestId: c.get('requestId'), ...clientAddress(c) })
      return act(c, { done })
    } catch (err) {
      if (err instanceof BrokerError && err.status === 400) return act(c, { revoke, error: err.description }, 400)
      throw err
    }
  })

  app.post('/console/act/explain', async (c) => {
    const f = await readConsoleForm(c)
    const form: ExplainForm = {}
    for (const k of ['iss', 'sub', 'client_id', 'groups', 'scopes', 'role', 'token_type', 'audience', 'scope', 'host'] as const) if (Text(f[k])) form[k] = Text(f[k])
    if (!deps.policy) return act(c, { explain: form, error: 'policy explain is not available here' }, 400)
    const list = (s: string | undefined) => (s ?? '').split(/[\s,]+/).filter(Boolean)
    const parsed = ExplainBody.safeParse({
      subject: { iss: form.iss ?? '', sub: form.sub ?? '', ...(form.client_id ? { client_id: form.client_id } : {}), groups: list(form.groups), scopes: list(form.scopes) },
      role: form.role ?? '',
      ...(form.token_type ? { token_type: form.token_type } : {}),
      ...(form.audience ? { audience: form.audience } : {}),
      ...(form.scope ? { scope: form.scope } : {}),
      ...(form.host ? { host: form.host } : {}),
    })
    if (!parsed.success) {
      const i = parsed.error.issues[0]!
      return act(c, { explain: form, error: `explain: ${i.path.join('.') || 'form'}: ${i.message}` }, 400)
    }
    const explanation = explain(deps.policy.current, decisionRequestFrom(parsed.data))
    return act(c, { explain: form, explanation: withRevocationBlocks(explanation, deps.revocations, parsed.data.subject) })
  })

  return app
}

/** The search form as an audit query: the admin API's filters; times are UTC (datetime-local has no zone). */
function searchQuery(f: SearchForm, cursor: string | undefined): AuditQuery {
  const time = (name: 'from' | 'to', v: string | undefined): number | undefined => {
    if (v === undefined) return undefined
    const ms = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(v) ? Date.parse(`${v}Z`) : NaN
    // Date.parse rolls a day the month lacks (02-31) or hour 24 over into the next; the time it gives must
    // print back as the one typed, or another range than the one asked for would be searched.
    if (!Number.isFinite(ms) || new Date(ms).toISOString().slice(0, v.length) !== v) throw new InvalidRequest(`${name} must be a date and time`)
    return Math.floor(ms / 1000) + (name === 'to' && v.length === 16 ? 59 : 0)
  }
  for (const [k, v] of Object.entries(f)) if (v !== undefined && v.length > 512) throw new InvalidRequest(`${k} is longer than 512 characters`)
  if (f.type !== undefined && !/^[a-z.]+$/.test(f.type)) throw new InvalidRequest('unknown type')
  if (f.decision !== undefined && f.decision !== 'allow' && f.decision !== 'deny') throw new InvalidRequest('decision must be allow or deny')
  const from = time('from', f.from)
  const to = time('to', f.to)
  return {
    limit: 100,
    ...(f.jti ? { jti: f.jti } : {}), ...(f.sub ? { issuedSub: f.sub } : {}), ...(f.caller ? { caller: f.caller } : {}),
    ...(f.site ? { site: f.site } : {}), ...(f.role ? { role: f.role } : {}), ...(f.request_id ? { requestId: f.request_id } : {}),
    ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}),
    ...(f.type ? { type: f.type as AuditQuery['type'] & string } : {}), ...(f.decision ? { decision: f.decision as 'allow' | 'deny' } : {}),
    ...(cursor ? { cursor } : {}),
  }
}

/** The sign-in this browser started, from its cookie, if it is for `state` and has not expired. */
function pendingSignIn(cookie: string | undefined, state: string, now: number): PendingSignIn | undefined {
  if (cookie === undefined || cookie.length > 4096) return undefined
  let p: Partial<PendingSignIn>
  try { p = JSON.parse(Buffer.from(cookie, 'base64url').toString('utf8')) as Partial<PendingSignIn> } catch { return undefined }
  if (typeof p !== 'object' || p === null) return undefined
  const { state: bound, codeVerifier, nonce, expiresAt } = p
  if (typeof bound !== 'string' || typeof codeVerifier !== 'string' || typeof nonce !== 'string' || typeof expiresAt !== 'number') return undefined
  // The broker only ever writes random, non-empty values here: an empty one is a made-up cookie, and an empty
  // state would match a callback that carries none.
  if (bound === '' || codeVerifier === '' || nonce === '') return undefined
  return sameToken(bound, state) && expiresAt > now ? { state: bound, codeVerifier, nonce, expiresAt } : undefined
}
