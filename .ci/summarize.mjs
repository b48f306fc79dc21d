// Reads vitest JSON reports and prints the closing "N passed, N failed" line.
// Arguments: repeated triples <exit code> <report.json> <comma-separated projects that must run tests>.
import { existsSync, readFileSync } from 'node:fs'
import { relative } from 'node:path'

// Which project a test file belongs to, by the include globs in vitest.config.ts.
const PROJECT_OF_DIR = [
  ['test/unit/', 'unit'], ['test/http/', 'http'], ['test/conformance/', 'http'],
  ['test/integration/', 'integration'], ['test/security/', 'security'], ['test/interop/', 'interop'],
]
const projectOf = (file) => PROJECT_OF_DIR.find(([dir]) => relative(process.cwd(), file).startsWith(dir))?.[1] ?? 'unknown'

const args = process.argv.slice(2)
let passed = 0
let failed = 0
for (let i = 0; i < args.length; i += 3) {
  const code = Number(args[i])
  const file = args[i + 1]
  const required = args[i + 2].split(',')
  let runFailed = 0
  const ranPerProject = new Map(required.map((p) => [p, 0]))
  if (existsSync(file)) {
    const report = JSON.parse(readFileSync(file, 'utf8'))
    passed += report.numPassedTests
    runFailed = report.numFailedTests
    // The JSON report does not name projects. test/conformance runs twice (http through app.request,
    // conformance-socket through serve's socket path): a file's second report belongs to the second project.
    const seenConformance = new Set()
    for (const t of report.testResults) {
      const ran = t.assertionResults.filter((a) => a.status === 'passed' || a.status === 'failed').length
      let p = projectOf(t.name)
      if (p === 'http' && relative(process.cwd(), t.name).startsWith('test/conformance/')) {
        if (seenConformance.has(t.name)) p = 'conformance-socket'
        else seenConformance.add(t.name)
      }
      ranPerProject.set(p, (ranPerProject.get(p) ?? 0) + ran)
      // A file that failed to load (syntax error, failing beforeAll) has no failed assertion.
      if (t.status === 'failed' && t.assertionResults.every((a) => a.status !== 'failed')) runFailed++
      const skipped = t.assertionResults.filter((a) => a.status === 'skipped' || a.status === 'pending' || a.status === 'todo').length
      if (skipped > 0) { console.log(`${relative(process.cwd(), t.name)}: ${skipped} skipped test(s): not allowed`); runFailed += skipped }
    }
  } else {
    console.log(`${file}: no report was written`)
  }
  for (const [p, n] of ranPerProject) {
    if (required.includes(p) && n === 0) { console.log(`project ${p} ran zero tests`); runFailed++ }
  }
  // A runner (or the type check before it) that exited non-zero without a counted failure still failed.
  if (code !== 0 && runFailed === 0) runFailed = 1
  failed += runFailed
}
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed > 0 ? 1 : 0)
