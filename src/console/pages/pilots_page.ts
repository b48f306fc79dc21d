import type { LivePilot } from '../../issuance/pilot_list.ts'
import { duration, html, query, utc } from '../html.ts'
import { page, type Viewer } from './layout.ts'

/** Live pilots by site and job, with their last renewal (the same list as GET /v1/pilots). */
export function pilotsPage(o: { viewer: Viewer; pilots: LivePilot[]; now: number }): string {
  // A SLURM job id is unique within one cluster only: two enrolments' job 42 at one site are two jobs.
  const jobs = new Set(o.pilots.map((p) => `${p.site}:${p.enrolment}:${p.job}`)).size
  const rows = o.pilots.map((p) => html`<tr><td class="nw">${p.site}</td><td class="nw">${p.job}</td><td class="nw">${p.node}</td><td class="mono">${p.identity}</td><td>${p.role}</td>
<td class="nw">${utc(p.redeemedAt)}</td><td>${p.lastRenewedAt !== undefined ? html`${utc(p.lastRenewedAt)} <span class="muted">(${duration(o.now - p.lastRenewedAt)} ago)</span>` : html`<span class="muted">never</span>`}</td>
<td class="num">${p.renewals}</td><td>${duration(p.exp - o.now)}</td><td class="nw">${utc(p.jobEnd)}</td>
<td><a href="/console/act${query({ kind: 'pilot-job', value: `${p.site}:${p.job}` })}">revoke job…</a>
<a href="/console/act${query({ kind: 'pilot-enrolment', value: p.enrolment })}">revoke enrolment…</a></td></tr>`)
  const body = html`<div class="card"><h2>Live pilots: ${o.pilots.length} node${o.pilots.length === 1 ? '' : 's'} in ${jobs} job${jobs === 1 ? '' : 's'}</h2>
${o.pilots.length === 0 ? html`<p class="muted">No pilot holds an unexpired token.</p>` : html`<table><thead><tr><th>site</th><th>job</th><th>node</th><th>identity</th><th>role</th><th>enrolled (UTC)</th><th>last renewal (UTC)</th><th class="num">renewals</th><th>token left</th><th>job end (UTC)</th><th></th></tr></thead><tbody>${rows}</tbody></table>`}</div>`
  return page('Pilots', body, { viewer: o.viewer, tab: 'pilots' })
}
