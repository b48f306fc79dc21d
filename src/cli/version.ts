import { readFileSync } from 'node:fs'

/**
 * The package's version, read from package.json at run time. This file sits two levels below the package
 * root both as src/cli/version.ts (checkout) and as dist/cli/version.js (installed package), so one
 * relative URL serves both layouts; reading it (not importing it) keeps package.json out of tsc's output.
 */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
  return typeof pkg.version === 'string' ? pkg.version : 'unknown'
}
