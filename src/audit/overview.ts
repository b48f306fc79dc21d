import { SPLIT_DIMENSIONS, type AuditAggregates, type CountRow, type LiveRow, type SplitDimension } from './aggregate.ts'

/** One bar of a chart: a bucket's counts per series key (e.g. per role). */
export interface SeriesBucket {
  bucket: number
  counts: Record<string, number>
}

/** Issuances (first and renewed) and denials over time, split by one dimension. */
export interface SplitSeries {
  by: SplitDimension
  /** Series names, most frequent first; records without the label are "(none)". */
  keys: string[]
  issued: SeriesBucket[]
  denied: SeriesBucket[]
}

export interface AuditOverview {
  from: number
  to: number
  bucketSeconds: number
  series: SplitSeries[]
  /** Denials in the range by reason, most frequent first. */
  denialsByReason: Array<{ reason: string; count: number }>
  live: LiveRow[]
}

export const NO_LABEL = '(none)'
/** Denials whose body cannot be read (edited by hand, or corrupted), so neither can their reason. */
export const UNREADABLE_LABEL = '(unreadable record: body edited or corrupted)'

/**
 * The overview the console charts and GET /v1/audit/summary returns: three GROUP BY queries over
 * [from, to], shaped into one bucket per `bucketSeconds` (empty buckets included, so charts keep their time
 * axis), plus live tokens by site and role (tokens issued within `maxTokenLifetime` and not yet expired).
 */
export async function auditOverview(
  store: AuditAggregates,
  q: { from: number; to: number; bucketSeconds: number; now: number; maxTokenLifetime: number },
): Promise<AuditOverview> {
  const [rows, byReason, live] = await Promise.all([
    store.countByTime({ from: q.from, to: q.to, bucketSeconds: q.bucketSeconds }),
    store.countDenialReasons({ from: q.from, to: q.to }),
    store.countLive({ now: q.now, since: q.now - q.maxTokenLifetime }),
  ])
  const buckets: number[] = []
  const first = Math.floor(q.from / q.bucketSeconds) * q.bucketSeconds
  // Bounded by the caller's range check (at most a few hundred buckets).
  for (let b = first; b <= q.to; b += q.bucketSeconds) buckets.push(b)
  const series = SPLIT_DIMENSIONS.map((by) => split(by, rows, buckets))
  const reasons = new Map<string, number>()
  for (const r of byReason) {
    const label = r.unreadable ? UNREADABLE_LABEL : r.reason ?? NO_LABEL
    reasons.set(label, (reasons.get(label) ?? 0) + r.count)
  }
  return {
    from: q.from, to: q.to, bucketSeconds: q.bucketSeconds, series,
    denialsByReason: [...reasons].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1)),
    live,
  }
}

function split(by: SplitSeries['by'], rows: CountRow[], buckets: number[]): SplitSeries {
  const totals = new Map<string, number>()
  const issued = new Map(buckets.map((b) => [b, {} as Record<string, number>]))
  const denied = new Map(buckets.map((b) => [b, {} as Record<string, number>]))
  for (const r of rows) {
    const key = r[by] ?? NO_LABEL
    const target = (r.type === 'token.denied' ? denied : issued).get(r.bucket)
    if (!target) continue
    target[key] = (target[key] ?? 0) + r.count
    totals.set(key, (totals.get(key) ?? 0) + r.count)
  }
  const keys = [...totals].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([k]) => k)
  const list = (m: Map<number, Record<string, number>>) => [...m].map(([bucket, counts]) => ({ bucket, counts }))
  return { by, keys, issued: list(issued), denied: list(denied) }
}
