import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

// What `serve` loads at start-up is resident for the life of the process. Packages needed only by the
// development IAM, the development TLS certificate or the PostgreSQL backend are imported where they
// are used, so a broker without them does not carry them (docs/performance.md).
const SRC = join(import.meta.dirname, '../../src')

/** Specifiers a file loads when it is evaluated: static imports and re-exports, not `import type`. */
function loadedSpecifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?([^'"]*?)\s*from\s+['"]([^'"]+)['"]/gm)) if (!m[2]) out.push(m[4]!)
  for (const m of text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)) out.push(m[1]!)
  return out
}

/** The static import closure of `entry` within src/: its files and the packages they import. */
function closure(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string) => {
    if (files.has(file)) return
    files.add(file)
    for (const s of loadedSpecifiers(file)) {
      if (s.startsWith('.')) {
        const target = resolve(dirname(file), s)
        if (existsSync(target)) visit(target)
      } else if (!s.startsWith('node:')) {
        packages.add(s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!)
      }
    }
  }
  visit(join(SRC, entry))
  return { files, packages }
}

describe('what serve loads at start-up', () => {
  it('sees the imports it follows (guards against a walker that finds nothing)', () => {
    const { files, packages } = closure('cli/commands/serve.ts')
    expect(files.size).toBeGreaterThan(50)
    expect(packages).toContain('hono')
    expect(packages).toContain('jose')
  })

  it.each(['oidc-provider', '@peculiar/x509', 'reflect-metadata', 'pg'])('does not import %s until a feature needs it', (pkg) => {
    expect(closure('cli/commands/serve.ts').packages).not.toContain(pkg)
  })

  it('the CLI entry point loads no logger: --version and the one-line errors need no pino', () => {
    expect(closure('cli/main.ts').packages).not.toContain('pino')
  })

  it('the CLI entry point loads no command until one runs', () => {
    const commands = [...closure('cli/main.ts').files].map((f) => relative(SRC, f)).filter((f) => f.startsWith('cli/commands/'))
    expect(commands).toEqual([])
  })
})
