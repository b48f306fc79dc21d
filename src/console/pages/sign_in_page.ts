import { html } from '../html.ts'
import { banner, page } from './layout.ts'

/** Sign-in: through IAM (when configured), or with the bootstrap admin token for first setup. */
export function signInPage(o: { iam: boolean; preCsrf: string; error?: string; status?: string }): string {
  const body = html`${o.error ? banner('error', o.error) : ''}${o.status ? banner('info', o.status) : ''}
<div class="card"><h2>Sign in to the console</h2>
<p>Only callers the policy grants the <code>admin</code> role may use the console, exactly as for the admin API.</p>
${o.iam ? html`<p><a id="sign-in-iam" href="/console/login">Sign in with IAM</a></p>` : html`<p class="muted">Sign-in through IAM is not configured.</p>`}
</div>
<div class="card"><h2>Bootstrap admin token</h2><p class="muted">For first setup, before IAM admins exist.</p>
<form method="post" action="/console/sign-in/token"><input type="hidden" name="csrf" value="${o.preCsrf}">
<label>token<input type="password" name="token" autocomplete="off" required maxlength="8192"></label> <button type="submit">Sign in</button></form></div>`
  return page('Sign in', body)
}

/** A page that says one thing (refusals, errors), with a way back. */
export function messagePage(title: string, message: string, o: { link?: [string, string] } = {}): string {
  const [href, text] = o.link ?? ['/console/sign-in', 'Sign in']
  return page(title, html`${banner('error', message)}<p><a href="${href}">${text}</a></p>`)
}

/**
 * After the IAM callback: a same-site page that moves on to the console. A redirect would keep the
 * navigation cross-site (it started at IAM), so the browser would withhold the SameSite=Strict session
 * cookie from the next request; a refresh from our own page is same-site.
 */
export function continuePage(to: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${to}"><title>Signed in</title></head>` +
    `<body><p>Signed in. <a href="${to}">Continue to the console</a>.</p></body></html>`
}

/**
 * After sign-out, on to IAM's end-session endpoint (a URL IAM's discovery named, with our parameters): a
 * page of our own refreshes there, since a redirect of the sign-out form post to another origin would fall
 * under the console's CSP form-action 'self'. The URL is escaped as any attribute value.
 */
export function leavingPage(to: string): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${to}"><title>Signed out</title></head>
<body><p>Signed out of the console. <a href="${to}">Sign out at IAM as well</a>.</p></body></html>`.value
}
