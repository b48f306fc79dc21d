// Micro-benchmark of the per-record audit MAC (src/audit/record_mac.ts) against the per-record hash it
// follows, on one thread: `node bench/record_mac.ts [records]`. What the SQLite writer thread (or, for
// PostgreSQL and the memory store, the main thread) adds per record is the difference between the rows.
import { randomBytes } from 'node:crypto'
import { encodeEventBody, recordHash } from '../src/audit/chain.ts'
import { auditMacKey, recordMac } from '../src/audit/record_mac.ts'

const n = Number(process.argv[2] ?? 200_000)
const key = auditMacKey(randomBytes(32))
// A token.issued body of the size the broker writes (~600 bytes).
const body = encodeEventBody({
  type: 'token.issued', time: 1_795_557_188, requestId: '13b81819-acfa-450e-8828-655b83d77baf',
  caller: { iss: 'https://iam.example.org/', sub: 'ctb-cloud-a-provisioner', client_id: 'ctb-cloud-a-provisioner', groups: [] },
  clientAddress: '192.0.2.10', role: 'startd', tokenKind: 'idtoken', issuedSub: 'startd-cloud-a-ep-17@eps.pool.example.org',
  jti: 'fa60db71b73be01eaf46681bd3668d1b', scopes: ['condor:/ADVERTISE_STARTD', 'condor:/ADVERTISE_MASTER', 'condor:/READ'], audience: [],
  exp: 1_795_643_588, tokenSha256: 'cb'.repeat(32), policyRule: 'cloud-a-execute-points', decision: 'allow', site: 'cloud-a',
  detail: { gen: 1, host: 'ep-17.cloud-a.example.org' },
})

function run(withMac: boolean): number {
  let prev = '0'.repeat(64)
  let sink = 0
  const t0 = process.hrtime.bigint()
  for (let seq = 1; seq <= n; seq++) {
    prev = recordHash(seq, prev, body)
    if (withMac) sink += recordMac(key, prev).length
  }
  const ns = Number(process.hrtime.bigint() - t0)
  if (sink < 0) console.log(sink)
  return ns / n / 1000
}

// Interleaved rounds after a warm-up, so frequency scaling and other load hit both alike.
run(true); run(false)
const hashOnly: number[] = []
const withMac: number[] = []
for (let round = 0; round < 5; round++) { hashOnly.push(run(false)); withMac.push(run(true)) }
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(`records: ${n} per round, body ${body.length} bytes, 5 interleaved rounds (median)`)
console.log(`hash only:  ${median(hashOnly).toFixed(2)} µs/record`)
console.log(`hash + MAC: ${median(withMac).toFixed(2)} µs/record`)
console.log(`MAC alone:  ${(median(withMac) - median(hashOnly)).toFixed(2)} µs/record`)
