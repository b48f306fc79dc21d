import type { Context, MiddlewareHandler } from 'hono'
import { getCookie } from 'hono/cookie'
import { InvalidRequest, InvalidToken, MethodNotAllowed, TemporarilyUnavailable } from '../../errors.ts'
import type { ConsoleSessions } from '../../console/sessions.ts'
import { sameToken } from '../../console/sessions.ts'
import { messagePage } from '../../console/pages/sign_in_page.ts'
import type { Viewer } from '../../console/pages/layout.ts'
import { authenticateAdmin, type AdminAuthOptions, type AdminPrincipal } from './admin_auth.ts'

/** The session cookie: `__Host-` makes the browser insist on Secure, Path=/ and no Domain. */
export const SESSION_COOKIE = '__Host-ctb-console'

declare module 'hono' {
  interface ContextVariableMap {
    consoleViewer: Viewer
  }
}

/** Security headers of every console response: no script at all, styles only from our own origin. */
export const CONSOLE_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

export function consoleHeaders(): MiddlewareHandler {
  return async (c, next) => {
    await next()
    setConsoleHeaders(c)
  }
}

function setConsoleHeaders(c: Context): void {
  c.header('Content-Security-Policy', CONSOLE_CSP)
  c.header('X-Content-Type-Options', 'nosniff')
  c.header('X-Frame-Options', 'DENY')
  // The callback URL carries the authorization code: never hand it to another origin. Not no-referrer:
  // under it browsers send "Origin: null" on our own form posts, which the origin check must refuse.
  c.header('Referrer-Policy', 'same-origin')
  c.header('Cache-Control', 'no-store')
  // SameSite=Strict does not stop a neighbour on the same site (another host under the same domain) from
  // loading a console URL with the admin's cookie as an image or no-cors fetch: CORP keeps the answer out of
  // its process (no side channel reads it), COOP leaves a console it opens no handle on its window.
  c.header('Cross-Origin-Resource-Policy', 'same-origin')
  c.header('Cross-Origin-Opener-Policy', 'same-origin')
}

/** The console's page for a 405 (middleware/method_guard.ts): the API's Allow, in the console's HTML and headers. */
export function methodNotAllowedPage(c: Context, err: MethodNotAllowed): Response {
  setConsoleHeaders(c)
  c.header('Allow', err.allow.join(', '))
  return c.html(messagePage('Method not allowed', `This page answers only ${err.allow.join(', ')}.`), 405)
}

/**
 * A POST comes from our own pages: its Origin (sent by browsers on every POST) is the broker's, and for a
 * signed-in user the form carries the session's CSRF token. SameSite=Strict cookies already keep other
 * sites' requests unauthenticated; this is the second lock.
 */
export function sameOrigin(header: string | undefined, origin: string): boolean {
  // No Origin is refused too: browsers send it on every POST, so a POST without one did not come from our
  // pages through one (an extension or proxy stripped it, or it is no browser at all). Fail closed.
  return header !== undefined && header === origin
}

/**
 * The console's page for a 503 (IAM could not be asked, or could not start a sign-in), with the Retry-After
 * the API's temporarily_unavailable carries for the same cause (oauth_error_response.ts): a page is for a
 * person, but a browser extension, a monitor or a proxy reading the status should be told how long to wait.
 */
export function unavailablePage(c: Context, err: TemporarilyUnavailable, link?: [string, string]): Response {
  c.header('Retry-After', String(err.retryAfter))
  return c.html(messagePage('Unavailable', err.description, link ? { link } : {}), 503)
}

/**
 * The console's page for a 429 (the address limit: a blocked address, or an admin sign-in it refused), with
 * the Retry-After the API's slow_down carries, for the same reason as unavailablePage's.
 */
export function tooManyPage(c: Context, limited: { description: string; retryAfter: number }): Response {
  c.header('Retry-After', String(limited.retryAfter))
  return c.html(messagePage('Too many requests', limited.description), 429)
}

/**
 * Signed-in admins only. The session's bearer goes through authenticateAdmin on every request, the
 * decision the admin API makes, so a caller whose admin grant, token or IAM account is revoked is out at
 * the next click. GET without a session goes to the sign-in page; a refused POST gets 403.
 */
export function consoleSession(deps: { sessions: ConsoleSessions; auth: AdminAuthOptions; origin: string; now: () => number }): MiddlewareHandler {
  return async (c, next) => {
    const id = getCookie(c, SESSION_COOKIE)
    const session = await deps.sessions.get(id, deps.now())
    const post = c.req.method === 'POST'
    if (!session) {
      if (!post) return c.redirect('/console/sign-in', 303)
      return c.html(messagePage('Signed out', 'Your session has ended; sign in again.'), 403)
    }
    let principal: AdminPrincipal
    try {
      principal = await authenticateAdmin(session.bearer, deps.auth)
    } catch (err) {
      if (!(err instanceof InvalidToken)) {
        if (err instanceof TemporarilyUnavailable) return unavailablePage(c, err, ['/console', 'Try again'])
        throw err
      }
      // Best effort: the bearer is refused at every request anyway, so a row left behind admits nobody.
      await deps.sessions.delete(id).catch(() => {})
      return c.html(messagePage('Refused', 'You are no longer an admin for this broker (your admin grant or token was revoked or has expired).'), 403)
    }
    if (post && !await formOfSession(c, session.csrf, deps.origin)) return csrfRefused(c)
    c.set('consoleViewer', { principal: principal.id, csrf: session.csrf })
    c.set('admin', principal)
    await next()
    return undefined
  }
}

/**
 * A console form's fields. A body that claims to be multipart/form-data and is not (no boundary, cut off,
 * garbage) makes the platform's form parser throw a TypeError; that is the client's error, refused as
 * invalid_request like any malformed body, not an internal one (a 500 and a stack in the log, which anyone
 * could have had from the sign-in form). Other types give no fields, as before.
 */
export async function readConsoleForm(c: Context): Promise<Awaited<ReturnType<Context['req']['parseBody']>>> {
  try {
    return await c.req.parseBody()
  } catch (err) {
    if (err instanceof TypeError) throw new InvalidRequest('the form could not be read', { cause: err })
    throw err
  }
}

/** Whether this POST comes from our origin and its form carries the session's CSRF token. */
export async function formOfSession(c: Context, csrf: string, origin: string): Promise<boolean> {
  const form = await readConsoleForm(c)
  const sent = typeof form.csrf === 'string' ? form.csrf : ''
  return sameOrigin(c.req.header('origin'), origin) && sameToken(sent, csrf)
}

/**
 * The refusal page when a browser sent a form without Origin: reloading cannot help there (the browser or an
 * extension strips the header on every POST), so the page names what is missing and what to change.
 */
export const NO_ORIGIN_MESSAGE = 'Your browser sent this form without an Origin header, which the console needs to tell its own forms from another site\'s. A privacy setting or extension removes it; allow it for this site and submit the form again.'

export function csrfRefused(c: Context): Response {
  const message = c.req.header('origin') === undefined ? NO_ORIGIN_MESSAGE : 'This form did not come from this console session (CSRF check failed); reload the page and try again.'
  return c.html(messagePage('Refused', message, { link: ['/console', 'Back to the console'] }), 403)
}
