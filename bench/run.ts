// npm run bench: a benchmark, not a test. Prints rates for this machine; put the figures in your notes.
import { cpus } from 'node:os'
import { mintRates } from './mint_rate.ts'
import { EXCHANGE_ROW, RENEWAL_ROW, tokenEndpointLoad } from './token_http.ts'

const connections = Number(process.env.BENCH_CONNECTIONS ?? 32)
const durationMs = Number(process.env.BENCH_SECONDS ?? 5) * 1000
const runs = Number(process.env.BENCH_RUNS ?? 3)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

console.log(`condor-token-broker bench: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`)
console.log('\n# raw minting, one core (ops/s)')
for (const [name, ops] of Object.entries(await mintRates())) console.log(`${name.padEnd(62)} ${ops.toLocaleString('en-US').padStart(10)}`)

for (const transport of ['http', 'https'] as const) {
  const { client, results } = await tokenEndpointLoad({ connections, durationMs, transport, runs })
  console.log(`\n# ${transport.toUpperCase()} on loopback, ${connections} connections, median of ${runs} runs of ${durationMs / 1000} s; broker in its own process; client: ${client}`)
  console.log(`${'endpoint'.padEnd(48)} ${'req/s'.padStart(8)} ${'(range)'.padStart(14)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)}`)
  for (const [name, rs] of Object.entries(results)) {
    const rps = rs.map((r) => r.rps)
    const range = `${Math.min(...rps)}-${Math.max(...rps)}`
    const errors = rs.reduce((n, r) => n + r.errors, 0)
    const firstError = rs.find((r) => r.firstError)?.firstError
    console.log(`${name.padEnd(48)} ${String(median(rps)).padStart(8)} ${range.padStart(14)} ${String(median(rs.map((r) => r.p50ms))).padStart(8)} ${String(median(rs.map((r) => r.p99ms))).padStart(8)} ${String(errors).padStart(7)}${firstError ? `  first error: ${firstError}` : ''}`)
  }
  // Same broker, same run: renewal against exchange, median to median (target: at least 80 %).
  const ratio = median(results[RENEWAL_ROW]!.map((r) => r.rps)) / median(results[EXCHANGE_ROW]!.map((r) => r.rps))
  console.log(`renewal / exchange throughput: ${(100 * ratio).toFixed(0)} %`)
}
