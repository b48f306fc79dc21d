// Run inside a mount namespace (test/interop/read_only_keys.test.ts) in which data_dir/keys is a read-only
// bind: loads the keys as serve does at start-up and prints what it made of them, as one JSON line.
import { loadConfig } from '../../src/config.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'

const [dataDir] = process.argv.slice(2)
try {
  const { keys, report } = ensureAndLoadKeys(loadConfig({ env: { CTB_DATA_DIR: dataDir! } }), Math.floor(Date.now() / 1000))
  process.stdout.write(`${JSON.stringify({ signs: keys.scitoken.kid, nextJwtKeyError: report.nextJwtKeyError ?? null })}\n`)
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`)
}
