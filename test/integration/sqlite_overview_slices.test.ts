// The SQLite store reads what grows with the log (the overview's counts, unindexed searches, chain scans) in
// slices, one per event-loop turn, so an admin never stalls token requests: the slices must give what one
// query gives, and the loop must keep turning.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { COUNTED_TYPES_SQL } from '../../src/audit/aggregate.ts'
import { auditOverview } from '../../src/audit/overview.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'

const T0 = 1_800_000_000
const DAY = 86400
const TYPES = ['token.issued', 'token.renewed', 'token.denied', 'token.revoked'] as const
const ROLES = ['startd', 'schedd', null] as const
const SITES = ['cloud-a', 'cloud-b', 'zürich', null] as const
const KINDS = ['idtoken', 'scitoken', null] as const

interface Rec { time: number; type: number; role: number; site: number; kind: number; exp: number; reason: number }

/**
 * Rows straight into the table (one transaction), as large as real ones (a body of ~500 bytes, hashes,
 * indexed columns): the aggregates read only the columns, not the chain, but their cost follows row size.
 */
function fill(file: string, recs: readonly Rec[]): void {
  const db = new DatabaseSync(file)
  db.exec('PRAGMA busy_timeout = 5000')
  const ins = db.prepare(`INSERT INTO audit_log (time, type, request_id, caller_sub, issued_sub, jti, role, site, token_kind, decision, exp, body, prev_hash, hash)
    VALUES (?, ?, ?, 'factory', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
  const hash = 'ab'.repeat(32)
  const pad = 'x'.repeat(400)
  db.exec('BEGIN')
  recs.forEach((r, i) => {
    const type = TYPES[r.type]!
    const deny = type === 'token.denied'
    const body = JSON.stringify(deny && r.reason > 0 ? { type, reason: `reason-${r.reason}`, pad } : { type, pad })
    ins.run(r.time, type, `req-${i}`, `pilot-${i % 4}@pool.example.org`, `jti-${i}`, ROLES[r.role]!, SITES[r.site]!, KINDS[r.kind]!,
      deny ? 'deny' : 'allow', deny ? null : r.exp, body, hash, hash)
  })
  db.exec('COMMIT')
  db.close()
}

/** The single queries the store answered with before slicing, run on their own connection: the reference. */
function singleQueries(file: string, q: { from: number; to: number; bucketSeconds: number; now: number; since: number }) {
  const db = new DatabaseSync(file, { readOnly: true })
  try {
    const byTime = db.prepare(`SELECT (time / ${q.bucketSeconds}) * ${q.bucketSeconds} AS bucket, type, role, site, token_kind, count(*) AS count FROM audit_log
      WHERE time >= ? AND time <= ? AND type IN (${COUNTED_TYPES_SQL}) GROUP BY 1, 2, 3, 4, 5`).all(q.from, q.to)
    const reasons = db.prepare(`SELECT json_extract(body, '$.reason') AS reason, count(*) AS count FROM audit_log
      WHERE decision = 'deny' AND time >= ? AND time <= ? AND type = 'token.denied' GROUP BY 1`).all(q.from, q.to)
    const live = db.prepare(`SELECT site, role, count(*) AS count FROM audit_log
      WHERE time >= ? AND type IN ('token.issued', 'token.renewed') AND exp > ? GROUP BY 1, 2 ORDER BY 1, 2`).all(q.since, q.now)
    const num = <T extends Record<string, unknown>>(rows: T[]) => rows.map((r) => ({ ...r, count: Number(r.count), ...('bucket' in r ? { bucket: Number(r.bucket) } : {}) }))
    return { byTime: num(byTime), reasons: num(reasons), live: num(live) }
  } finally {
    db.close()
  }
}

const sorted = <T>(rows: T[]) => rows.map((r) => JSON.stringify(r)).sort()

/** Records over 30 days: spread out, plus bursts sharing one second (more than a slice holds). */
const recArb = (span: number) => fc.record({
  time: fc.oneof(fc.integer({ min: 0, max: span - 1 }), fc.constantFrom(0, 3599, 3600, DAY - 1, DAY, 15 * DAY + 1800)),
  type: fc.integer({ min: 0, max: TYPES.length - 1 }),
  role: fc.integer({ min: 0, max: ROLES.length - 1 }),
  site: fc.integer({ min: 0, max: SITES.length - 1 }),
  kind: fc.integer({ min: 0, max: KINDS.length - 1 }),
  exp: fc.integer({ min: 0, max: span + 2 * DAY }),
  reason: fc.integer({ min: 0, max: 3 }),
}).map((r) => ({ ...r, time: T0 + r.time, exp: T0 + r.exp }))

describe('SQLite overview aggregates in slices', () => {
  it('equal the single GROUP BY queries, for hour and day buckets and ranges cut mid-bucket', async () => {
    const span = 30 * DAY
    await fc.assert(fc.asyncProperty(
      fc.array(recArb(span), { minLength: 0, maxLength: 400 }),
      fc.integer({ min: 1, max: 40 }),
      fc.constantFrom(3600, DAY),
      fc.integer({ min: -DAY, max: span }), fc.integer({ min: 0, max: span + DAY }),
      fc.integer({ min: 0, max: span }), fc.integer({ min: 0, max: 3 * DAY }),
      async (recs, sliceRows, bucketSeconds, a, b, nowOff, lifetime) => {
        const file = join(tempDir(), 'a.db')
        const store = new SqliteStore({ file, writer: 'inline', sliceRows })
        try {
          fill(file, recs)
          const from = T0 + Math.min(a, b)
          const to = T0 + Math.max(a, b)
          const now = T0 + nowOff
          const want = singleQueries(file, { from, to, bucketSeconds, now, since: now - lifetime })
          expect(sorted(await store.countByTime({ from, to, bucketSeconds }))).toEqual(sorted(want.byTime))
          expect(sorted(await store.countDenialReasons({ from, to }))).toEqual(sorted(want.reasons))
          // countLive keeps the query's ORDER BY: compared in order.
          expect(await store.countLive({ now, since: now - lifetime })).toEqual(want.live)
        } finally {
          await store.close()
        }
      },
    ), { numRuns: 60 })
  })

  it('count a burst of many records in one second, more than a slice holds, once each', async () => {
    const file = join(tempDir(), 'a.db')
    const store = new SqliteStore({ file, writer: 'inline', sliceRows: 3 })
    try {
      const rec = (time: number): Rec => ({ time, type: 0, role: 0, site: 0, kind: 0, exp: T0 + DAY, reason: 0 })
      fill(file, [...Array.from({ length: 10 }, () => rec(T0 + 5)), rec(T0 + 4), rec(T0 + 6), rec(T0 + 3601)])
      expect(await store.countByTime({ from: T0, to: T0 + 3601, bucketSeconds: 3600 })).toEqual([
        { bucket: T0 - (T0 % 3600), type: 'token.issued', role: 'startd', site: 'cloud-a', token_kind: 'idtoken', count: 12 },
        { bucket: T0 - (T0 % 3600) + 3600, type: 'token.issued', role: 'startd', site: 'cloud-a', token_kind: 'idtoken', count: 1 },
      ])
      expect(await store.countLive({ now: T0 + 10, since: T0 })).toEqual([{ site: 'cloud-a', role: 'startd', count: 13 }])
    } finally {
      await store.close()
    }
  })

  it('page GET /v1/audit searches with unindexed filters exactly like one query, newest first', async () => {
    const span = 3 * DAY
    await fc.assert(fc.asyncProperty(
      fc.array(recArb(span), { minLength: 0, maxLength: 300 }),
      fc.integer({ min: 1, max: 40 }),
      fc.record({
        site: fc.option(fc.constantFrom('cloud-a', 'zürich', 'nowhere'), { nil: undefined }),
        type: fc.option(fc.constantFrom('token.issued' as const, 'token.denied' as const), { nil: undefined }),
        requestId: fc.option(fc.integer({ min: 0, max: 300 }).map((i) => `req-${i}`), { nil: undefined }),
        decision: fc.option(fc.constantFrom('allow' as const, 'deny' as const), { nil: undefined }),
        // Indexed filters beside them: the slices then walk that index.
        role: fc.option(fc.constantFrom('startd', 'schedd'), { nil: undefined }),
        caller: fc.option(fc.constantFrom('factory', 'someone'), { nil: undefined }),
        issuedSub: fc.option(fc.integer({ min: 0, max: 3 }).map((i) => `pilot-${i}@pool.example.org`), { nil: undefined }),
      }),
      fc.option(fc.integer({ min: -DAY, max: span }), { nil: undefined }), fc.option(fc.integer({ min: 0, max: span + DAY }), { nil: undefined }),
      fc.integer({ min: 1, max: 30 }),
      async (recs, sliceRows, filters, a, b, limit) => {
        const file = join(tempDir(), 'a.db')
        const store = new SqliteStore({ file, writer: 'inline', sliceRows })
        try {
          fill(file, recs)
          const from = a === undefined ? undefined : T0 + (b === undefined ? a : Math.min(a, b))
          const to = b === undefined ? undefined : T0 + (a === undefined ? b : Math.max(a, b))
          const f = Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== undefined))
          // Expected from the records themselves: seq is the insertion order.
          const want = recs.map((r, i) => ({ ...r, seq: i + 1 })).filter((r) => {
            const type = TYPES[r.type]!
            return (from === undefined || r.time >= from) && (to === undefined || r.time <= to)
              && (f.site === undefined || SITES[r.site] === f.site) && (f.type === undefined || type === f.type)
              && (f.requestId === undefined || `req-${r.seq - 1}` === f.requestId) && (f.decision === undefined || (type === 'token.denied') === (f.decision === 'deny'))
              && (f.role === undefined || ROLES[r.role] === f.role) && (f.caller === undefined || f.caller === 'factory')
              && (f.issuedSub === undefined || `pilot-${(r.seq - 1) % 4}@pool.example.org` === f.issuedSub)
          }).sort((x, y) => y.time - x.time || y.seq - x.seq).map((r) => r.seq)
          const got: number[] = []
          let cursor: string | undefined
          // Bounded: each page returns at least one record or ends.
          for (let page = 0; page <= recs.length; page++) {
            const p = await store.query({ ...f, ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }), limit, ...(cursor ? { cursor } : {}) })
            got.push(...p.records.map((r) => r.seq))
            cursor = p.nextCursor
            if (!cursor) break
          }
          expect(got).toEqual(want)
        } finally {
          await store.close()
        }
      },
    ), { numRuns: 60 })
  })

  it('verifying the chain from the console lets the event loop run between steps', async () => {
    const file = join(tempDir(), 'a.db')
    const store = new SqliteStore({ file })
    try {
      const n = 50_000
      let next = 0
      await Promise.all(Array.from({ length: 256 }, async () => {
        // Bounded: next reaches n.
        while (next < n) {
          const i = next++
          await store.record({ type: 'token.issued', time: T0 + i, requestId: `r-${i}`, caller: { sub: 'factory' }, role: 'startd', tokenKind: 'idtoken',
            issuedSub: `startd-${i}@pool.example.org`, jti: `jti-${i}`, decision: 'allow', exp: T0 + i + 3600, site: 'cloud-a' })
        }
      }))
      let v: Awaited<ReturnType<SqliteStore['verify']>> | undefined
      let turns = 0
      const counter = setInterval(() => { turns++ }, 1)
      try {
        await store.verify().then((r) => { v = r })
      } finally {
        clearInterval(counter)
      }
      expect(v).toMatchObject({ ok: true, records: n })
      // In one go the loop would not turn at all (~350 ms here); in steps of 500 records (100 steps, a few ms
      // each) a 1 ms timer runs between them. Counted, not timed: a stall measured in wall-clock time also
      // counts the moments the scheduler gives both cores to other threads (62 ms once in a CI run, 7-14 ms alone).
      expect(turns).toBeGreaterThanOrEqual(20)
    } finally {
      await store.close()
    }
  })

  describe('on a 400,000-record log', () => {
    const n = 400_000
    const span = 30 * DAY
    let file: string
    let store: SqliteStore
    beforeAll(() => {
      file = join(mkdtempSync(join(tmpdir(), 'ctb-')), 'a.db')
      store = new SqliteStore({ file, writer: 'inline' })
      fill(file, Array.from({ length: n }, (_, i) => ({
        time: T0 + Math.floor((i * span) / n), type: i % 20 === 0 ? 2 : i % 3 === 0 ? 1 : 0, role: i % 2, site: i % 3, kind: i % 2, exp: T0 + span, reason: i % 4,
      })))
    })
    afterAll(async () => {
      await store.close()
      rmSync(dirname(file), { recursive: true, force: true })
    })

    it('a 30-day summary keeps the event loop turning', async () => {
      let o: Awaited<ReturnType<typeof auditOverview>> | undefined
      const worst = await longestStall(async () => {
        o = await auditOverview(store, { from: T0, to: T0 + span - 1, bucketSeconds: DAY, now: T0 + span - 1, maxTokenLifetime: span })
      })
      // All of it was counted: each record is once in the role split (issued or denied).
      const total = o!.series[0]!.issued.concat(o!.series[0]!.denied).reduce((s, b) => s + Object.values(b.counts).reduce((x, y) => x + y, 0), 0)
      expect(total).toBe(n)
      // One GROUP BY per aggregate, all in one turn, held the loop for ~650 ms here; slices a few ms each.
      expect(worst).toBeLessThan(60)
    })

    it.each([
      ['request_id', { requestId: 'no-such-request' }],
      ['caller (indexed, every record) and site', { caller: 'factory', site: 'nowhere' }],
    ])('a search by %s that matches nothing keeps the event loop turning', async (_, filters) => {
      let got: Awaited<ReturnType<SqliteStore['query']>> | undefined
      const worst = await longestStall(async () => { got = await store.query({ ...filters, limit: 100 }) })
      expect(got).toEqual({ records: [] })
      // One query read all 400,000 rows in one go (~130 ms here); slices a few ms each.
      expect(worst).toBeLessThan(60)
    })
  })
})

/**
 * The longest run of this thread's own CPU time between 1 ms timer ticks while `run` runs (its own end
 * included), in ms. CPU time, not wall-clock: a wall-clock gap also counts the moments the scheduler gives
 * both cores to other threads (the SQLite writer, the checkpointer, another test worker), which is not a
 * stall the code under test caused. A slice that holds the loop burns this thread's CPU for its whole length.
 */
async function longestStall(run: () => Promise<void>): Promise<number> {
  const cpuMs = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000 }
  let last = cpuMs()
  let worst = 0
  const tick = setInterval(() => { const t = cpuMs(); worst = Math.max(worst, t - last); last = t }, 1)
  try {
    await new Promise((r) => setTimeout(r, 20))
    worst = 0
    last = cpuMs()
    await run()
    return Math.max(worst, cpuMs() - last)
  } finally {
    clearInterval(tick)
  }
}
