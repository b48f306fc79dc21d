import type { SeriesBucket } from '../audit/overview.ts'
import { html, type Html } from './html.ts'

/**
 * Charts drawn here as inline SVG, on the server. The console needs stacked bars over time and a few bar
 * lists; a charting library would be the console's only script (tens of kB, plus a CSP that allows
 * scripts), while this is a hundred lines and lets the policy forbid scripts outright.
 */

/** Colour-blind-safe palette (Okabe–Ito); series past the seventh share the last colour as "other". */
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#999999']
export const MAX_SERIES = PALETTE.length - 1
export const OTHER = 'other'

export function seriesColour(i: number): string {
  return PALETTE[Math.min(i, PALETTE.length - 1)]!
}

/** Keys as charted: the first MAX_SERIES, then "other" for the rest. */
export function chartKeys(keys: readonly string[]): string[] {
  return keys.length > MAX_SERIES + 1 ? [...keys.slice(0, MAX_SERIES), OTHER] : [...keys]
}

function countsFor(b: SeriesBucket, keys: readonly string[]): number[] {
  const shown = new Set(keys)
  return keys.map((k) => k === OTHER && !Object.hasOwn(b.counts, OTHER)
    ? Object.entries(b.counts).filter(([key]) => !shown.has(key)).reduce((n, [, c]) => n + c, 0)
    : b.counts[k] ?? 0)
}

/** Stacked bars, one per bucket; each segment carries a <title> (hover text) with its key and count. */
export function stackedBars(buckets: readonly SeriesBucket[], keys: readonly string[], o: { label: (bucket: number) => string; title: string; width?: number; height?: number }): Html {
  const width = o.width ?? 560
  const height = o.height ?? 150
  const left = 34
  const bottom = 18
  const plotW = width - left - 4
  const plotH = height - bottom - 6
  const charted = chartKeys(keys)
  const totals = buckets.map((b) => countsFor(b, charted).reduce((a, c) => a + c, 0))
  const max = Math.max(1, ...totals)
  const step = plotW / Math.max(1, buckets.length)
  const barW = Math.max(1, step * 0.8)
  const bars = buckets.map((b, i) => {
    let y = plotH + 6
    const x = left + i * step + (step - barW) / 2
    return countsFor(b, charted).map((c, k) => {
      if (c === 0) return ''
      const h = (c / max) * plotH
      y -= h
      return html`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}" fill="${seriesColour(k)}"><title>${o.label(b.bucket)} ${charted[k]}: ${c}</title></rect>`
    })
  })
  const every = Math.max(1, Math.ceil(buckets.length / 8))
  const ticks = buckets.map((b, i) => i % every === 0
    ? html`<text x="${(left + i * step + step / 2).toFixed(1)}" y="${height - 4}" text-anchor="middle">${o.label(b.bucket)}</text>` : '')
  return html`<svg class="chart" role="img" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" aria-label="${o.title}">
<line x1="${left}" y1="${plotH + 6}" x2="${width - 4}" y2="${plotH + 6}" stroke="#888"/>
<text x="${left - 4}" y="12" text-anchor="end">${max}</text><text x="${left - 4}" y="${plotH + 6}" text-anchor="end">0</text>
${bars}${ticks}</svg>`
}

/** The legend for a chart: a colour swatch (an SVG square, so no inline style is needed) per key. */
export function legend(keys: readonly string[]): Html {
  return html`<ul class="legend">${chartKeys(keys).map((k, i) => html`<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" fill="${seriesColour(i)}"/></svg> ${k}</li>`)}</ul>`
}

/** Horizontal bars for a ranked list (denials by reason, live tokens by site and role). */
export function barList(items: ReadonlyArray<{ label: string; count: number }>, o: { width?: number } = {}): Html {
  if (items.length === 0) return html`<p class="muted">none</p>`
  const width = o.width ?? 260
  const max = Math.max(1, ...items.map((i) => i.count))
  return html`<table class="bars">${items.map((i) => html`<tr><td class="label">${i.label}</td><td class="num">${i.count}</td><td><svg width="${width}" height="12" aria-hidden="true"><rect width="${Math.max(1, (i.count / max) * width).toFixed(1)}" height="12" fill="${seriesColour(0)}"/></svg></td></tr>`)}</table>`
}
