// npm run bench: a benchmark, not a test. Prints rates for this machine; put the figures in your notes.
import { cpus } from 'node:os'
import { mintRates } from './mint_rate.ts'

console.log(`condor-token-broker bench: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`)
console.log('\n# raw minting, one core (ops/s)')
for (const [name, ops] of Object.entries(await mintRates())) console.log(`${name.padEnd(62)} ${ops.toLocaleString('en-US').padStart(10)}`)
