// Run inside a mount namespace (test/interop/read_only_mount.test.ts): loads a policy directory and a broker.yaml
// as serve does and prints what each made of them, as one JSON line.
import { loadConfig } from '../../src/config.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { formatIssue, loadPolicyDir } from '../../src/policy/load.ts'

const CTX: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'pool.example.org', vars: {}, scitokenProfile: 'wlcg', maxLifetime: {} }
const [dir, file] = process.argv.slice(2)
const loaded = loadPolicyDir(dir!, CTX)
let config = 'ok'
try {
  loadConfig({ file: file!, env: {} })
} catch (err) {
  config = (err as Error).message
}
process.stdout.write(`${JSON.stringify({ policy: loaded.ok ? 'ok' : loaded.issues.map(formatIssue), config })}\n`)
