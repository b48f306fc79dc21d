import type { KeyStatus } from '../../keys/key_status.ts'
import type { Explanation } from '../../policy/explain.ts'
import { REVOCATION_KINDS, type Revocation } from '../../revocation/revocation.ts'
import { duration, html, utc, type Html } from '../html.ts'
import { banner, csrfField, page, type Viewer } from './layout.ts'

/** What the revoke form holds, as typed. */
export interface RevokeForm { kind?: string; value?: string; iss?: string; reason?: string }
/** What the explain form holds, as typed. */
export type ExplainForm = Partial<Record<'iss' | 'sub' | 'client_id' | 'groups' | 'scopes' | 'role' | 'token_type' | 'audience' | 'scope' | 'host', string>>

const KIND_LABELS: Record<string, string> = { jti: 'jti (one token)', sub: 'sub (issued sub, or caller with iss)', client: 'caller client_id', role: 'role', site: 'site', 'pilot-job': 'pilot job (SITE:JOBID)', 'pilot-enrolment': 'pilot enrolment (credential jti)' }

function revokeFields(f: RevokeForm, hidden: boolean): Html {
  if (hidden) return html`${(['kind', 'value', 'iss', 'reason'] as const).map((k) => f[k] ? html`<input type="hidden" name="${k}" value="${f[k]}">` : '')}`
  return html`<label>selector<select name="kind">${REVOCATION_KINDS.map((k) => html`<option value="${k}"${f.kind === k ? html` selected` : ''}>${KIND_LABELS[k]}</option>`)}</select></label>
<label>value<input name="value" required maxlength="256" value="${f.value ?? ''}"></label>
<label>iss (sub / client only, optional)<input name="iss" maxlength="512" value="${f.iss ?? ''}"></label>
<label>reason<input name="reason" maxlength="500" value="${f.reason ?? ''}"></label>`
}

function keysCard(k: KeyStatus, now: number): Html {
  return html`<div class="card"><h2>Signing keys</h2>
<table><thead><tr><th>SciToken kid</th><th>alg</th><th>created (UTC)</th><th>age</th><th>status</th></tr></thead><tbody>
${k.scitoken.map((s) => html`<tr><td class="mono">${s.kid}</td><td>${s.alg}</td><td>${utc(s.created)}</td><td>${duration(s.ageSeconds)}</td>
<td>${s.status}${s.publishUntil !== undefined ? html` <span class="muted">(published until ${utc(s.publishUntil)})</span>` : ''}</td></tr>`)}</tbody></table>
<table><thead><tr><th>HTCondor key</th><th>file age</th><th>fingerprint</th><th></th></tr></thead><tbody>
${k.condor.map((c) => html`<tr><td class="mono">${c.name}</td><td>${duration(c.ageSeconds)}</td><td class="mono">${c.fingerprint}</td><td>${c.signing ? 'signing' : ''}</td></tr>`)}</tbody></table>
<p class="muted">Rotation is an operator action (<code>keys rotate</code>, then SIGHUP); no rotation is scheduled.
${k.nextUnpublish !== undefined ? html` The retired SciToken key leaves the JWKS in ${duration(k.nextUnpublish - now)} (${utc(k.nextUnpublish)} UTC).` : ''}</p></div>`
}

function explainCard(viewer: Viewer, f: ExplainForm, result?: Explanation): Html {
  const field = (k: keyof ExplainForm, label: string, placeholder = '') => html`<label>${label}<input name="${k}" maxlength="1024" value="${f[k] ?? ''}" placeholder="${placeholder}"></label>`
  return html`<div class="card"><h2>Policy explain</h2>
<form class="search" method="post" action="/console/act/explain">${csrfField(viewer)}
${field('iss', 'caller iss')}${field('sub', 'caller sub')}${field('client_id', 'client_id')}${field('groups', 'groups', '/cms, /cms/pilots')}${field('scopes', 'IAM scopes', 'openid wlcg')}
${field('role', 'role')}${field('token_type', 'token type', 'idtoken | scitoken')}${field('audience', 'audience')}${field('scope', 'requested scope')}${field('host', 'host')}
<div><button type="submit">Explain</button></div></form>
${result ? html`<p>decision: <strong id="explain-decision">${result.decision.allow ? 'allow' : 'deny'}</strong></p><pre>${JSON.stringify(result, null, 2)}</pre>` : ''}</div>`
}

/** Act: revoke (dry run, then confirm), the active revocations, policy explain, key status. */
export function actPage(o: {
  /** Undefined when the list could not be read after a revocation committed: the page still says it was made. */
  viewer: Viewer; now: number; keys: KeyStatus; revocations: Revocation[] | undefined
  revoke?: RevokeForm; preview?: { liveTokens: number }; done?: Revocation; error?: string
  explain?: ExplainForm; explanation?: Explanation
}): string {
  const r = o.revoke ?? {}
  const confirm = o.preview ? html`<div class="card" id="confirm"><h2>Confirm revocation</h2>
<p>Revoking <strong>${r.kind}</strong> <span class="mono">${r.value}</span>${r.iss ? html` at <span class="mono">${r.iss}</span>` : ''} matches
<strong id="dry-run-count">${o.preview.liveTokens}</strong> live token${o.preview.liveTokens === 1 ? '' : 's'} (dry run: nothing stored yet).</p>
<form class="inline" method="post" action="/console/act/revoke">${csrfField(o.viewer)}${revokeFields(r, true)}<input type="hidden" name="confirm" value="yes">
<button class="danger" type="submit">Revoke</button></form> <a href="/console/act">Cancel</a></div>` : ''
  const done = o.done ? banner('info', html`Revoked: entry <span class="mono" id="revocation-id">${o.done.id}</span> (${o.done.kind} <span class="mono">${o.done.value}</span>) until ${utc(o.done.until)} UTC. It is in GET /v1/revocations/condor and the audit log.`) : ''
  const body = html`${o.error ? banner('error', o.error) : ''}${done}${confirm}
<div class="card"><h2>Revoke</h2><form class="search" method="post" action="/console/act/revoke">${csrfField(o.viewer)}${revokeFields(r, false)}
<div><button type="submit">Dry run…</button></div></form></div>
<div class="card"><h2>Active revocations${o.revocations ? ` (${o.revocations.length})` : ''}</h2>${o.revocations === undefined ? html`<p class="muted" id="list-unread">The active revocations could not be read just now (the audit store did not answer); reload in a few seconds.</p>` : o.revocations.length === 0 ? html`<p class="muted">none</p>` : html`<table><thead><tr><th class="num">id</th><th>kind</th><th>value</th><th>revoked (UTC)</th><th>until (UTC)</th><th>by</th><th>reason</th></tr></thead><tbody>
${o.revocations.map((v) => html`<tr><td class="num">${v.id}</td><td>${v.kind}</td><td class="mono">${v.value}</td><td>${utc(v.revokedAt)}</td><td>${utc(v.until)}</td><td class="mono">${v.revokedBy ?? ''}</td><td>${v.reason ?? ''}</td></tr>`)}</tbody></table>`}</div>
${explainCard(o.viewer, o.explain ?? {}, o.explanation)}
${keysCard(o.keys, o.now)}`
  return page('Act', body, { viewer: o.viewer, tab: 'act' })
}
