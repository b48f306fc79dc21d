// Micro-benchmark: what retention's cleanup of pilot_renewals (storage/pilot_renewals.ts, `prune`) costs,
// and what an index on `expires` would save it and cost the renewal path. The table is filled with ROWS rows
// as pilots leave it (keyed by the second of the replaced token, expiring at their job's end, spread over
// the next JOB_SPAN seconds); one prune deletes what expired in the last PRUNE_EVERY seconds (serve's
// default prune_interval). The delete runs in a transaction that is rolled back, so each round sees the same
// table. Inserts go through the renewal's own statements, in the writer's batches. Not part of `npm run bench`.
//
//   node bench/pilot_renewals_prune.ts [--rows N] [--inserts N] [--batch N] [--rounds N] [--pg]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { newJti } from '../src/lib/jti.ts'
import { PILOT_RENEWALS_TABLE, renewalKey, renewalSql } from '../src/storage/pilot_renewals.ts'
import { startPostgres } from '../test/support/postgres.ts'

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    inserts: { type: 'string', default: '20000' },
    batch: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '5' },
    pg: { type: 'boolean', default: false },
  },
})
const ROWS = Number(args.rows)
const INSERTS = Number(args.inserts)
const BATCH = Number(args.batch)
const ROUNDS = Number(args.rounds)
const T0 = Math.floor(Date.now() / 1000)
/** Jobs end over the next two days (a 48 h wall-time limit): about 1/48 of the rows go at each hourly prune. */
const JOB_SPAN = 172_800
const PRUNE_EVERY = 3600

type Row = [number, string, string, number, number]
function row(i: number, n: number): Row {
  // Tokens replaced over the last 6 h, in order; each pilot's job ends somewhere in the next JOB_SPAN.
  const second = T0 - 21_600 + Math.floor((i * 21_600) / n)
  const [s, jti] = renewalKey(newJti(second))
  return [s, jti, newJti(second + 10_800), second + 10_800, T0 + ((i * 7919) % JOB_SPAN)]
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const ms = (x: number) => `${x.toFixed(1)} ms`

function sqlite(indexed: boolean): void {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-renprune-'))
  try {
    const db = new DatabaseSync(join(dir, 'a.db'))
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL')
    db.exec(PILOT_RENEWALS_TABLE('INTEGER', true))
    if (indexed) db.exec('CREATE INDEX pilot_renewals_expires ON pilot_renewals (expires)')
    const sql = renewalSql(() => '?')
    const ins = db.prepare(sql.insert)
    db.exec('BEGIN')
    for (let i = 0; i < ROWS; i++) ins.run(...row(i, ROWS))
    db.exec('COMMIT')
    db.exec('ANALYZE')
    const del = db.prepare(sql.prune)
    const times: number[] = []
    let deleted = 0
    for (let r = 0; r < ROUNDS; r++) {
      db.exec('BEGIN IMMEDIATE')
      const t = performance.now()
      deleted = Number(del.run(T0 + PRUNE_EVERY).changes)
      times.push(performance.now() - t)
      db.exec('ROLLBACK')
    }
    // The renewal path: batches of BATCH inserts, one transaction each, as the writer thread commits them.
    const t = performance.now()
    for (let i = 0; i < INSERTS; i += BATCH) {
      db.exec('BEGIN IMMEDIATE')
      for (let j = i; j < Math.min(INSERTS, i + BATCH); j++) ins.run(...row(ROWS + j, ROWS + INSERTS).map((v, k) => k === 0 ? (v as number) + 21_600 : v) as Row)
      db.exec('COMMIT')
    }
    const per = ((performance.now() - t) * 1000) / INSERTS
    console.log(`sqlite ${indexed ? 'indexed  ' : 'no index '} rows ${ROWS}: prune deletes ${deleted}, median ${ms(median(times))} (min ${ms(Math.min(...times))}); insert ${per.toFixed(2)} µs/row`)
    db.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function postgres(dsn: string, indexed: boolean): Promise<void> {
  const client = new pg.Client({ connectionString: dsn })
  await client.connect()
  try {
    await client.query('DROP TABLE IF EXISTS pilot_renewals')
    await client.query(PILOT_RENEWALS_TABLE('BIGINT', false))
    if (indexed) await client.query('CREATE INDEX pilot_renewals_expires ON pilot_renewals (expires)')
    const insertMany = `INSERT INTO pilot_renewals (second, jti, successor, renewed_at, expires, retries, superseded)
      SELECT s, j, su, r, e, 0, 0 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS t(s, j, su, r, e)
      ON CONFLICT (second, jti) DO NOTHING`
    const cols = (rows: Row[]) => [0, 1, 2, 3, 4].map((k) => rows.map((r) => r[k]))
    for (let i = 0; i < ROWS; i += 10_000) {
      await client.query(insertMany, cols(Array.from({ length: Math.min(10_000, ROWS - i) }, (_, j) => row(i + j, ROWS))))
    }
    await client.query('VACUUM ANALYZE pilot_renewals')
    const sql = renewalSql((i) => `$${i}`)
    const times: number[] = []
    let deleted = 0
    for (let r = 0; r < ROUNDS; r++) {
      await client.query('BEGIN')
      const t = performance.now()
      deleted = (await client.query(sql.prune, [T0 + PRUNE_EVERY])).rowCount ?? 0
      times.push(performance.now() - t)
      await client.query('ROLLBACK')
    }
    const batches: Row[][] = []
    for (let i = 0; i < INSERTS; i += BATCH) {
      batches.push(Array.from({ length: Math.min(BATCH, INSERTS - i) }, (_, j) => {
        const r = row(ROWS + i + j, ROWS + INSERTS)
        return [r[0] + 21_600, r[1], r[2], r[3], r[4]] as Row
      }))
    }
    const t = performance.now()
    for (const b of batches) {
      await client.query('BEGIN')
      await client.query(insertMany, cols(b))
      await client.query('COMMIT')
    }
    const per = ((performance.now() - t) * 1000) / INSERTS
    console.log(`postgres ${indexed ? 'indexed  ' : 'no index '} rows ${ROWS}: prune deletes ${deleted}, median ${ms(median(times))} (min ${ms(Math.min(...times))}); insert ${per.toFixed(2)} µs/row`)
  } finally {
    await client.end()
  }
}

if (args.pg) {
  const server = await startPostgres()
  try {
    const dsn = await server.createDatabase('renewals')
    await postgres(dsn, false)
    await postgres(dsn, true)
  } finally {
    await server.stop()
  }
} else {
  sqlite(false)
  sqlite(true)
}
