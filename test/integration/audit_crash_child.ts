// Child process for audit_crash.test.ts: issues tokens concurrently against a SQLite audit store and
// prints each token on stdout only after issueToken() resolved, i.e. after its record committed. The
// parent SIGKILLs it mid-flight. Bounded: stops by itself after MAX_TOKENS or 60 s.
import { loadConfig } from '../../src/config.ts'
import { issueDepsFrom, issueToken, type AllowedDecision } from '../../src/issuance/issue.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'
import { systemClock } from '../../src/lib/clock.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'

const [dataDir, dbFile] = process.argv.slice(2)
const MAX_TOKENS = 500_000
const WORKERS = 64
const config = loadConfig({ env: { CTB_DATA_DIR: dataDir!, CTB_TRUST_DOMAIN: 'pool.example.org' } })
const { keys } = ensureAndLoadKeys(config, systemClock.now())
const store = new SqliteStore({ file: dbFile!, synchronous: 'full' })
const decision: AllowedDecision = {
  allow: true, ruleId: 'crash-test', role: 'pilot', tokenKind: 'idtoken', identity: 'pilot-crash@pilots.pool.example.org',
  scopes: ['ADVERTISE_STARTD', 'READ'], audience: [], lifetime: 3600,
}
const deps = issueDepsFrom(config, { keys, audit: store, clock: systemClock, generations: { generationOf: () => 1 } })
const caller = { iss: 'https://iam.example.org/', sub: 'factory', groups: [], scopes: [], exp: 0, claims: {} }
const deadline = Date.now() + 60_000
let issued = 0
async function worker(w: number): Promise<void> {
  while (issued < MAX_TOKENS && Date.now() < deadline) {
    const r = await issueToken(decision, { requestId: `w${w}-${issued}`, caller }, deps)
    issued++
    process.stdout.write(`${r.token}\n`)
  }
}
process.stderr.write('ready\n')
await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)))
await store.close()
