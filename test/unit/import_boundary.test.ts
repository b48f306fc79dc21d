import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

// The architecture in one rule: dependencies point http → issuance → (policy, audit, iam, keys).
// The core never learns about HTTP, and clients talk to the broker only through the wire contract.
const ROOT = join(import.meta.dirname, '../../src')
// metrics is no core, but what it counts comes from the core's parts, so it needs no HTTP either.
const CORE = ['issuance', 'policy', 'audit', 'iam', 'revocation', 'storage', 'keys', 'inspect', 'metrics', 'ratelimit', 'ca', 'console', 'credentials']

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n)
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : []
  })
}

function imports(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!)
}

describe('import boundaries', () => {
  it.each(CORE)('src/%s imports neither hono nor src/http', (dir) => {
    const bad = files(join(ROOT, dir)).flatMap((f) => imports(f)
      .filter((i) => i === 'hono' || i.startsWith('hono/') || i.startsWith('@hono/') || /(^|\/)http\//.test(i))
      .map((i) => `${relative(ROOT, f)} imports ${i}`))
    expect(bad).toEqual([])
  })

  it('src/clients/* import only src/contract, src/lib and other clients from the broker', () => {
    let clientFiles: string[] = []
    try { clientFiles = files(join(ROOT, 'clients')) } catch { clientFiles = [] }
    const allowed = ['clients', 'contract', 'lib'].map((d) => join(ROOT, d) + '/')
    const bad = clientFiles.flatMap((f) => imports(f)
      .filter((i) => i.startsWith('.') && !allowed.some((a) => resolve(dirname(f), i).startsWith(a)))
      .map((i) => `${relative(ROOT, f)} imports ${i}`))
    expect(bad).toEqual([])
  })

  it('sees the imports it checks (guards against a regex that matches nothing)', () => {
    expect(imports(join(ROOT, 'app.ts'))).toContain('hono')
    expect(imports(join(ROOT, 'issuance/exchange.ts')).length).toBeGreaterThan(3)
  })
})
