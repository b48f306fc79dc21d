// npm run bench: a benchmark, not a test. Prints rates for this machine; put the figures in your notes.
import { cpus } from 'node:os'
import { mintRates } from './mint_rate.ts'
import { tokenEndpointLoad } from './token_http.ts'

const connections = Number(process.env.BENCH_CONNECTIONS ?? 32)
const durationMs = Number(process.env.BENCH_SECONDS ?? 5) * 1000

console.log(`condor-token-broker bench: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`)
console.log('\n# raw minting, one core (ops/s)')
for (const [name, ops] of Object.entries(await mintRates())) console.log(`${name.padEnd(62)} ${ops.toLocaleString('en-US').padStart(10)}`)

for (const transport of ['http', 'https'] as const) {
  const { client, results } = await tokenEndpointLoad({ connections, durationMs, transport })
  console.log(`\n# ${transport.toUpperCase()} on loopback, ${connections} connections, ${durationMs / 1000} s each; broker in its own process; client: ${client}`)
  console.log(`${'endpoint'.padEnd(48)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)}`)
  for (const [name, r] of Object.entries(results)) {
    console.log(`${name.padEnd(48)} ${String(r.rps).padStart(8)} ${String(r.p50ms).padStart(8)} ${String(r.p99ms).padStart(8)} ${String(r.errors).padStart(7)}${r.firstError ? `  first error: ${r.firstError}` : ''}`)
  }
}
