import type { CredentialActivity } from '../../credentials/credential_activity.ts'
import { ACTIVITY_SCAN_LIMIT } from '../../credentials/credential_activity.ts'
import { duration, html, utc, type Html } from '../html.ts'
import { banner, csrfField, page, type Viewer } from './layout.ts'

/** The revoke form of one credential, as typed. */
export interface CredentialRevokeForm { user: string; provider: string; reason?: string }

function when(t: number, now: number): Html {
  return html`${utc(t)} <span class="muted">(${duration(now - t)} ago)</span>`
}

function lastToken(a: CredentialActivity, now: number): Html {
  const l = a.lastToken
  if (l.state === 'found') return html`<a href="/console/records/${l.seq}">${utc(l.time)}</a> <span class="muted">(${duration(now - l.time)} ago)</span>`
  if (l.state === 'beyond') return html`<span class="muted">not in the newest ${ACTIVITY_SCAN_LIMIT} records</span>`
  return html`<span class="muted">none since registration</span>`
}

function state(a: CredentialActivity, viewer: Viewer): Html {
  const c = a.credential
  if (c.revoked) {
    return html`<span class="bad">revoked</span>${c.revokedAt !== undefined ? html` ${utc(c.revokedAt)}` : ''}${c.revokedBy ? html`<br><span class="muted mono">by ${c.revokedBy}</span>` : ''}`
  }
  return html`<span class="ok">active</span> <form class="inline" method="post" action="/console/credentials/revoke">${csrfField(viewer)}
<input type="hidden" name="user" value="${c.user}"><input type="hidden" name="provider" value="${c.provider}"><button type="submit">revoke…</button></form>`
}

/**
 * Users' stored job credentials (the list GET /v1/credentials gives) with when each last gave its jobs a
 * token; revoking one asks for a confirmation first.
 */
export function credentialsPage(o: {
  /** Undefined when the list could not be read after a revocation committed: the page still says it was made. */
  viewer: Viewer; now: number; enabled: boolean; credentials: CredentialActivity[] | undefined
  confirm?: CredentialRevokeForm; done?: CredentialRevokeForm; error?: string
}): string {
  const f = o.confirm
  const confirm = f ? html`<div class="card" id="confirm"><h2>Confirm revocation</h2>
<p>Revoke the stored credential of <strong class="mono">${f.user}</strong> for provider <strong class="mono">${f.provider}</strong>? Its jobs get no further
token (403 at their next fetch, so credmons drop <code>.use</code>), the sealed refresh token is deleted and, for kind iam, revoked at IAM.
The user registers again at their next submit.</p>
<form method="post" action="/console/credentials/revoke">${csrfField(o.viewer)}<input type="hidden" name="user" value="${f.user}"><input type="hidden" name="provider" value="${f.provider}">
<input type="hidden" name="confirm" value="yes"><label>reason<input name="reason" maxlength="500" value="${f.reason ?? ''}"></label>
<p><button class="danger" type="submit">Revoke credential</button> <a href="/console/credentials">Cancel</a></p></form></div>` : ''
  const done = o.done ? banner('info', html`Revoked the credential of <span class="mono" id="revoked-credential">${o.done.user}/${o.done.provider}</span>; the <code>credential.revoked</code> record names you.`) : ''
  const listed = o.credentials ?? []
  const active = listed.filter((a) => !a.credential.revoked).length
  const rows = listed.map((a) => {
    const c = a.credential
    return html`<tr><td class="mono nw">${c.user}</td><td class="mono">${c.provider}</td><td>${c.kind}</td><td class="mono">${c.scopes.join(' ')}</td><td class="mono">${c.audience.join(' ')}</td>
<td class="mono">${c.sub}<br><span class="muted">${c.iss}</span></td><td class="nw">${when(c.createdAt, o.now)}</td><td class="nw">${lastToken(a, o.now)}</td>
<td class="nw">${c.rotatedAt !== undefined ? utc(c.rotatedAt) : html`<span class="muted">${c.kind === 'iam' ? 'never' : 'n/a'}</span>`}</td><td>${state(a, o.viewer)}</td></tr>`
  })
  const table = !o.enabled ? html`<p class="muted">Job credentials are not enabled on this broker (<code>credentials.enabled</code>).</p>`
    : o.credentials === undefined ? html`<p class="muted" id="list-unread">The credentials could not be read just now (the audit store did not answer); reload in a few seconds.</p>`
    : listed.length === 0 ? html`<p class="muted">No user has registered a credential.</p>`
      : html`<table id="credentials"><thead><tr><th>user</th><th>provider</th><th>kind</th><th>scopes</th><th>audience</th><th>registered by (IAM)</th><th>registered (UTC)</th>
<th>last refresh (UTC)</th><th>refresh token rotated (UTC)</th><th>state</th></tr></thead><tbody>${rows}</tbody></table>`
  const body = html`${o.error ? banner('error', o.error) : ''}${done}${confirm}
<div class="card"><h2>Stored job credentials${o.credentials ? html`: ${listed.length} (${active} active)` : ''}</h2>${table}
<p class="muted"><strong>Last refresh</strong> is the newest token the broker obtained for the credential's jobs since it was registered: refreshed at IAM
(kind iam) or minted by the broker (kind scitoken), from the audit log's <code>token.issued</code> records. A token still fresh enough is handed out
again from the cache without a record, so credmons may fetch more often than this shows; records removed by audit retention are not seen.
<strong>Refresh token rotated</strong> is when IAM last returned a new refresh token (<code>credential.rotated</code>).</p></div>`
  return page('Credentials', body, { viewer: o.viewer, tab: 'credentials' })
}
