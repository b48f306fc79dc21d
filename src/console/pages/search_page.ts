import type { AuditPage, AuditRecord } from '../../audit/audit_log.ts'
import type { RecordCheck } from '../../audit/record_check.ts'
import { html, query, utc, type Html } from '../html.ts'
import { banner, page, type Viewer } from './layout.ts'

/** The search form's fields, as typed (strings), echoed back into the form. */
export const SEARCH_FIELDS = ['jti', 'sub', 'caller', 'site', 'role', 'request_id', 'from', 'to', 'type', 'decision'] as const
export type SearchForm = Partial<Record<(typeof SEARCH_FIELDS)[number], string>>

const TYPES = ['token.issued', 'token.denied', 'token.denied.aggregate', 'token.renewed', 'token.revoked', 'token.unrevoked', 'key.rotated', 'key.reloaded', 'policy.reloaded', 'audit.checkpoint']

function input(name: keyof SearchForm, labelText: string, form: SearchForm, type = 'text'): Html {
  return html`<label>${labelText}<input type="${type}" name="${name}" value="${form[name] ?? ''}"${type === 'text' ? html` maxlength="512"` : ''}></label>`
}

function select(name: keyof SearchForm, labelText: string, options: readonly string[], form: SearchForm): Html {
  return html`<label>${labelText}<select name="${name}"><option value="">any</option>${options.map((o) => html`<option${form[name] === o ? html` selected` : ''}>${o}</option>`)}</select></label>`
}

function row(r: AuditRecord): Html {
  const e = r.event
  // What the row's columns say places it; the body cannot be read, so nothing in it verifies.
  if (r.unreadable) {
    return html`<tr class="unreadable"><td class="num"><a href="/console/records/${r.seq}">${r.seq}</a></td><td class="nw">${utc(e.time)}</td><td class="nw">${e.type}</td>
<td colspan="7"><span class="bad">UNREADABLE</span>: ${r.unreadable.reason} (edited by hand, or corrupted: does not verify)</td></tr>`
  }
  return html`<tr><td class="num"><a href="/console/records/${r.seq}">${r.seq}</a></td><td class="nw">${utc(e.time)}</td><td class="nw">${e.type}</td><td>${e.decision ?? ''}</td>
<td class="mono">${e.caller?.sub ?? ''}${e.caller?.client_id ? html`<br><span class="muted">${e.caller.client_id}</span>` : ''}</td>
<td>${e.role ?? ''}</td><td>${e.site ?? ''}</td><td class="mono">${e.issuedSub ?? ''}</td><td class="mono">${e.jti ?? ''}</td><td>${e.reason ?? ''}</td></tr>`
}

/** Search: the admin API's audit filters as a form; results newest first, paged by cursor. */
export function searchPage(o: { viewer: Viewer; form: SearchForm; result?: AuditPage; error?: string }): string {
  const f = o.form
  const results = o.result ? html`<div class="card"><h2>${o.result.records.length} record${o.result.records.length === 1 ? '' : 's'}${o.result.nextCursor ? ' (more)' : ''}</h2>
<table id="results"><thead><tr><th class="num">seq</th><th>time (UTC)</th><th>type</th><th>decision</th><th>caller</th><th>role</th><th>site</th><th>issued sub</th><th>jti</th><th>reason</th></tr></thead>
<tbody>${o.result.records.map(row)}</tbody></table>
${o.result.nextCursor ? html`<p><a href="/console/search${query({ ...f, cursor: o.result.nextCursor })}">next page</a></p>` : ''}</div>` : ''
  const body = html`${o.error ? banner('error', o.error) : ''}<div class="card"><h2>Search the audit log</h2>
<form class="search" method="get" action="/console/search">
${input('jti', 'jti', f)}${input('sub', 'issued sub', f)}${input('caller', 'caller (IAM sub)', f)}${input('site', 'site', f)}${input('role', 'role', f)}
${input('request_id', 'request id', f)}${input('from', 'from (UTC)', f, 'datetime-local')}${input('to', 'to (UTC)', f, 'datetime-local')}
${select('type', 'type', TYPES, f)}${select('decision', 'decision', ['allow', 'deny'], f)}
<div><button type="submit">Search</button></div></form></div>${results}`
  return page('Search', body, { viewer: o.viewer, tab: 'search' })
}

function yesNo(v: boolean | null, none: string): Html {
  return v === null ? html`<span class="muted">${none}</span>` : v ? html`<span class="ok">yes</span>` : html`<span class="bad">NO</span>`
}

/** One record: its fields, its place in the chain and whether it verifies there. */
export function recordPage(o: { viewer: Viewer; check: RecordCheck }): string {
  const { record: r, hashOk, columnFaults, linkedToPrevious, linkedFromNext, mac } = o.check
  const verifies = hashOk && columnFaults.length === 0 && linkedToPrevious !== false && linkedFromNext !== false && mac.fault === undefined
  const event = r.unreadable
    ? html`<div class="card"><h2>Event</h2><p id="record-unreadable"><span class="bad">UNREADABLE</span>: ${r.unreadable.reason} (edited by hand, or corrupted). The body as stored:</p>
<pre id="record-body">${r.unreadable.body}</pre><p class="muted">What the row's indexed columns say (copies outside the hash, not evidence):</p><pre>${JSON.stringify(r.event, null, 2)}</pre></div>`
    : html`<div class="card"><h2>Event</h2><pre id="record-event">${JSON.stringify(r.event, null, 2)}</pre></div>`
  const body = html`<div class="card"><h2>Record ${r.seq}: ${r.unreadable ? 'unreadable' : r.event.type}</h2>
<dl class="kv">
<dt>chain position</dt><dd>seq <span class="mono">${r.seq}</span> · <a href="/console/records/${r.seq - 1}">previous</a> · <a href="/console/records/${r.seq + 1}">next</a></dd>
<dt>verifies</dt><dd id="record-verifies">${verifies ? html`<span class="ok">yes</span>` : html`<span class="bad">NO</span>`}</dd>
<dt>hash matches content</dt><dd>${yesNo(hashOk, '')}</dd>
<dt>indexed columns match content</dt><dd id="record-columns">${columnFaults.length === 0 ? html`<span class="ok">yes</span>` : html`<span class="bad">NO</span>: ${columnFaults.join('; ')}; searches and counts select by these columns`}</dd>
<dt>linked to previous</dt><dd>${yesNo(linkedToPrevious, 'previous record pruned')}</dd>
<dt>linked from next</dt><dd>${yesNo(linkedFromNext, 'this is the head')}</dd>
<dt>MAC</dt><dd id="record-mac">${mac.fault !== undefined ? html`<span class="bad">NO</span>: ${mac.fault}` : html`<span class="muted">${mac.note ?? ''}</span>`}</dd>
<dt>hash</dt><dd class="mono">${r.hash}</dd>
<dt>prev_hash</dt><dd class="mono">${r.prevHash}</dd>
<dt>time</dt><dd>${utc(r.event.time)} UTC</dd>
</dl></div>
${event}`
  return page(`Record ${r.seq}`, body, { viewer: o.viewer, tab: 'search' })
}
