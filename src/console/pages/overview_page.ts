import type { AuditOverview, SplitSeries } from '../../audit/overview.ts'
import type { ChainStatusView } from '../chain_status.ts'
import { html, utc, type Html } from '../html.ts'
import { barList, legend, stackedBars } from '../svg_chart.ts'
import { csrfField, page, type Viewer } from './layout.ts'

const TITLES: Record<SplitSeries['by'], string> = { role: 'role', site: 'site', token_kind: 'token kind' }

function label(bucketSeconds: number): (b: number) => string {
  return bucketSeconds >= 86400 ? (b) => new Date(b * 1000).toISOString().slice(5, 10) : (b) => `${new Date(b * 1000).toISOString().slice(11, 13)}h`
}

function total(s: SplitSeries, which: 'issued' | 'denied'): number {
  return s[which].reduce((n, b) => n + Object.values(b.counts).reduce((a, c) => a + c, 0), 0)
}

function chainCard(chain: ChainStatusView, viewer: Viewer): Html {
  const r = chain.result
  const status = !r ? html`<span class="muted">${chain.running ? 'verification running…' : 'not verified yet'}</span>`
    : r.ok ? html`<span class="ok" id="chain-status">verified</span> · ${r.records} records · head seq <span class="mono">${r.head.seq}</span> hash <span class="mono">${r.head.hash}</span>`
      : html`<span class="bad" id="chain-status">BROKEN</span> at seq ${r.broken.seq}: ${r.broken.reason}`
  return html`<div class="card"><h2>Audit chain</h2><p>${status}${chain.checkedAt !== undefined ? html` <span class="muted">(checked ${utc(chain.checkedAt)} UTC)</span>` : ''}</p>
<form method="post" action="/console/verify">${csrfField(viewer)}<button type="submit">Verify now</button></form></div>`
}

/** Overview: issuance and denials over time by role, site and token kind; live tokens; denials by reason; the chain. */
export function overviewPage(o: { overview: AuditOverview; chain: ChainStatusView; viewer: Viewer; bucket: 'hour' | 'day' }): string {
  const v = o.overview
  const lab = label(v.bucketSeconds)
  const rows = v.series.map((s) => html`<div class="grid">
<div class="card"><h2>Issued by ${TITLES[s.by]} <span class="muted">(${total(s, 'issued')})</span></h2>${stackedBars(s.issued, s.keys, { label: lab, title: `tokens issued per ${o.bucket} by ${TITLES[s.by]}` })}${legend(s.keys)}</div>
<div class="card"><h2>Denied by ${TITLES[s.by]} <span class="muted">(${total(s, 'denied')})</span></h2>${stackedBars(s.denied, s.keys, { label: lab, title: `denials per ${o.bucket} by ${TITLES[s.by]}` })}${legend(s.keys)}</div>
</div>`)
  const live = v.live.map((l) => ({ label: `${l.site ?? '(no site)'} / ${l.role ?? '(no role)'}`, count: l.count })).sort((a, b) => b.count - a.count)
  const body = html`<p class="range">${utc(v.from)} – ${utc(v.to)} UTC, per ${o.bucket} ·
<a href="/console?bucket=hour">last 24 hours</a><a href="/console?bucket=day">last 30 days</a></p>
${rows}
<div class="grid"><div class="card"><h2>Live tokens by site / role</h2>${barList(live)}</div>
<div class="card"><h2>Denials by reason</h2>${barList(v.denialsByReason.map((d) => ({ label: d.reason, count: d.count })))}</div></div>
${chainCard(o.chain, o.viewer)}`
  return page('Overview', body, { viewer: o.viewer, tab: 'overview' })
}
