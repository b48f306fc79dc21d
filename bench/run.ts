// npm run bench: a benchmark, not a test. Prints rates for this machine as a table and one JSON line
// ("BENCH_JSON {...}"). Exits non-zero only when a row could not run; a missed target is printed as
// "target missed" and changes nothing else.
//
//   BENCH_SECONDS (5) BENCH_RUNS (3) BENCH_CONNECTIONS (32) BENCH_TRANSPORTS (http,https) BENCH_REPLICAS (1; 0 skips)
//   BENCH_ENTRY (dist: npm run build first, then run dist/ as the package does | src: the TypeScript sources)
import { cpus } from 'node:os'
import type { LoadResult } from './http_load.ts'
import { mintRates } from './mint_rate.ts'
import { BENCH_ENTRY, buildDist } from './processes.ts'
import { REPLICAS_ROW, twoReplicas, type ReplicasResult } from './replicas.ts'
import { EXCHANGE_ROW, REFERENCE_ROW, RENEWAL_ROW, SCITOKEN_ROW, tokenEndpointLoad, type TokenEndpointResult } from './token_http.ts'

const connections = Number(process.env.BENCH_CONNECTIONS ?? 32)
const durationMs = Number(process.env.BENCH_SECONDS ?? 5) * 1000
const runs = Number(process.env.BENCH_RUNS ?? 3)
const transports = (process.env.BENCH_TRANSPORTS ?? 'http,https').split(',').filter((t): t is 'http' | 'https' => t === 'http' || t === 'https')
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** The broker's performance targets (docs/performance.md), judged on the plain-HTTP run. */
const TARGETS = {
  idtokenVsReference: 3,
  scitokenVsReference: 2,
  p99Ms: 10,
  renewalVsExchange: 0.8,
  peakRssMb: 200,
  idleRssMb: 120,
}

console.log(`condor-token-broker bench: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}; broker runs from ${BENCH_ENTRY}/`)
// What operators run (the npm package, the container image) is the built JavaScript.
if (BENCH_ENTRY === 'dist') {
  try {
    buildDist()
  } catch (err) {
    console.log(`could not build dist/ (BENCH_ENTRY=src runs the sources): ${(err as Error).message}`)
    process.exit(1)
  }
}
console.log('\n# raw minting, one core (ops/s)')
const mint = await mintRates()
for (const [name, ops] of Object.entries(mint)) console.log(`${name.padEnd(62)} ${ops.toLocaleString('en-US').padStart(10)}`)

type Summary = { rps: number; min: number; max: number; p50ms: number; p99ms: number; errors: number; firstError?: string }
const summarise = (rs: LoadResult[]): Summary => {
  const rps = rs.map((r) => r.rps)
  const firstError = rs.find((r) => r.firstError)?.firstError
  return {
    rps: median(rps), min: Math.min(...rps), max: Math.max(...rps),
    p50ms: median(rs.map((r) => r.p50ms)), p99ms: median(rs.map((r) => r.p99ms)), errors: rs.reduce((n, r) => n + r.errors, 0),
    ...(firstError ? { firstError } : {}),
  }
}

const failures: string[] = []
const missed: string[] = []
const json: Record<string, unknown> = { entry: BENCH_ENTRY, node: process.version, cpus: cpus().length, connections, seconds: durationMs / 1000, runs, mint }
const header = `${'row'.padEnd(56)} ${'req/s'.padStart(8)} ${'(range)'.padStart(14)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)} ${'vs ref'.padStart(7)}`
const judge = (what: string, ok: boolean, detail: string) => {
  console.log(`${ok ? 'target met   ' : 'target missed'}  ${what}: ${detail}`)
  if (!ok) missed.push(what)
}

for (const transport of transports) {
  const result: TokenEndpointResult = await tokenEndpointLoad({ connections, durationMs, transport, runs })
  console.log(`\n# ${transport.toUpperCase()} on loopback, ${connections} connections, median of ${runs} runs of ${durationMs / 1000} s; broker, development IAM${transport === 'http' ? ' and reference' : ''} each in their own process; client: ${result.client}`)
  console.log(header)
  const summaries: Record<string, Summary> = {}
  for (const [name, row] of Object.entries(result.rows)) {
    if ('error' in row) { console.log(`${name.padEnd(56)} could not run: ${row.error}`); failures.push(`${transport} ${name}`); continue }
    summaries[name] = summarise(row.runs)
  }
  const ref = summaries[REFERENCE_ROW]?.rps
  for (const [name, s] of Object.entries(summaries)) {
    const vs = ref && name !== REFERENCE_ROW ? `${(s.rps / ref).toFixed(2)}x` : ''
    console.log(`${name.padEnd(56)} ${String(s.rps).padStart(8)} ${`${s.min}-${s.max}`.padStart(14)} ${String(s.p50ms).padStart(8)} ${String(s.p99ms).padStart(8)} ${String(s.errors).padStart(7)} ${vs.padStart(7)}${s.firstError ? `  first error: ${s.firstError}` : ''}`)
  }
  if (result.rss) console.log(`${'broker RSS (MB): idle / peak after /token rows / peak'.padEnd(56)} ${String(result.rss.idleMb).padStart(8)} / ${result.rss.tokenPeakMb} / ${result.rss.peakMb}`)
  const ex = summaries[EXCHANGE_ROW]
  const rn = summaries[RENEWAL_ROW]
  const sci = summaries[SCITOKEN_ROW]
  json[transport] = { client: result.client, rows: summaries, ...(result.rss ? { rss: result.rss } : {}), ...(ref ? { reference_rps: ref } : {}) }
  // Renewal against exchange, same broker, same run, median to median.
  if (ex && rn) console.log(`renewal / exchange throughput: ${(100 * rn.rps / ex.rps).toFixed(0)} %`)
  if (transport !== 'http') continue
  if (ref && ex) judge(`IDTOKEN >= ${TARGETS.idtokenVsReference}x reference`, ex.rps >= TARGETS.idtokenVsReference * ref, `${(ex.rps / ref).toFixed(2)}x`)
  if (ref && sci) judge(`SciToken >= ${TARGETS.scitokenVsReference}x reference`, sci.rps >= TARGETS.scitokenVsReference * ref, `${(sci.rps / ref).toFixed(2)}x`)
  for (const [name, s] of [[EXCHANGE_ROW, ex], [SCITOKEN_ROW, sci], [RENEWAL_ROW, rn]] as const) {
    if (s) judge(`p99 <= ${TARGETS.p99Ms} ms at ${connections} connections (${name})`, s.p99ms <= TARGETS.p99Ms, `${s.p99ms} ms`)
  }
  if (ex && rn) judge(`renewal >= ${100 * TARGETS.renewalVsExchange} % of exchange`, rn.rps >= TARGETS.renewalVsExchange * ex.rps, `${(100 * rn.rps / ex.rps).toFixed(0)} %`)
  if (result.rss) {
    judge(`broker peak RSS <= ${TARGETS.peakRssMb} MB`, result.rss.peakMb <= TARGETS.peakRssMb, `${result.rss.peakMb} MB`)
    judge(`broker idle RSS <= ${TARGETS.idleRssMb} MB`, result.rss.idleMb <= TARGETS.idleRssMb, `${result.rss.idleMb} MB`)
  }
}

if (process.env.BENCH_REPLICAS !== '0') {
  const r: ReplicasResult = await twoReplicas({ connections, durationMs })
  console.log(`\n# ${REPLICAS_ROW}: HTTP, ${connections} connections split across both, one run of ${durationMs / 1000} s`)
  if ('skipped' in r) console.log(`${REPLICAS_ROW}: skipped (${r.skipped})`)
  else if ('error' in r) { console.log(`${REPLICAS_ROW}: could not run: ${r.error}`); failures.push(REPLICAS_ROW) }
  else {
    console.log(`aggregate ${r.rps} req/s (${r.perReplica.map((p) => p.rps).join(' + ')}), p99 ${r.p99ms} ms, errors ${r.errors}; audit verify: ${r.verify.out}`)
    if (!r.verify.ok) failures.push(`${REPLICAS_ROW}: audit verify failed`)
  }
  json.replicas = r
}

json.targets_missed = missed
json.failures = failures
console.log(`\nBENCH_JSON ${JSON.stringify(json)}`)
if (failures.length > 0) {
  console.log(`rows that could not run: ${failures.join('; ')}`)
  process.exitCode = 1
}
