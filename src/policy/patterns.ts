/**
 * The pattern languages of policy files, compiled once at load so `decide` only runs a prepared
 * RegExp or a Set lookup.
 *
 * One glob dialect serves hosts, audiences and request parameters: `*` matches a run (possibly
 * empty) of `[A-Za-z0-9_.-]`, the characters of host names and identity fragments. It can never
 * cross `/`, `:`, `@`, `#` or `?`, so `https://*.example.org` cannot be stretched into
 * `https://evil.test/x.example.org` and `condor://*:9618` stays one host.
 */

import { asciiLower } from '../lib/ascii_case.ts'

/** Characters a `*` may stand for. */
const GLOB_CHAR = '[A-Za-z0-9_.-]'

/** A value safe to splice into an identity (`user@domain`): no `@`, comma, space or control character. */
export const SAFE_VALUE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/

/** An RFC 1123 host name in lower case, at most 253 characters. */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/

/** Exact strings in a Set, globs in one alternation: the cheapest test for "any of these". */
export interface CompiledPatterns {
  test(value: string): boolean
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}

/** Compiles patterns (exact strings, or globs with `*`) into one matcher. Case-sensitive unless `ignoreCase` (ASCII case only). */
export function compilePatterns(patterns: readonly string[], options: { ignoreCase?: boolean } = {}): CompiledPatterns {
  const norm = (s: string) => (options.ignoreCase ? asciiLower(s) : s)
  const exact = new Set<string>()
  const globs: string[] = []
  for (const p of patterns) {
    if (p.includes('*')) globs.push(p.split('*').map((part) => escapeRegExp(norm(part))).join(`${GLOB_CHAR}*`))
    else exact.add(norm(p))
  }
  const re = globs.length > 0 ? new RegExp(`^(?:${globs.join('|')})$`) : undefined
  return {
    test: (value) => {
      const v = norm(value)
      return exact.has(v) || (re !== undefined && re.test(v))
    },
  }
}

/** True for a lower-case host name (callers lower-case first: DNS is case-insensitive). */
export function isHostName(value: string): boolean {
  return HOST_NAME.test(value)
}

/** A host pattern: host-name characters and `*`, not a bare `*` (which would admit every host). */
export function isHostPattern(value: string): boolean {
  return /^[a-z0-9*](?:[a-z0-9*.-]*[a-z0-9*])?$/.test(value) && /[a-z0-9]/.test(value)
}

/**
 * An absolute, normalised path as WLCG scopes require (docs/iam-and-wlcg.md §2.2): starts with `/`, no empty,
 * `.` or `..` segment, no percent-escapes (which could hide either), no whitespace or quotes.
 */
export function isNormalisedPath(path: string): boolean {
  if (!path.startsWith('/') || /[\s"\\%?#]/.test(path)) return false
  if (path === '/') return true
  const segments = path.slice(1).split('/')
  // A single trailing "/" (directory) leaves one empty last segment; any other empty segment is "//".
  return segments.every((seg, i) => (seg === '' ? i === segments.length - 1 : seg !== '.' && seg !== '..'))
}

/**
 * Whether `granted` covers `requested` hierarchically: `/a` covers `/a`, `/a/` and `/a/b`, not `/ab`.
 * A trailing `/` on the grant only marks a directory and does not narrow it.
 */
export function pathCovers(granted: string, requested: string): boolean {
  const base = granted.length > 1 && granted.endsWith('/') ? granted.slice(0, -1) : granted
  if (base === '/') return true
  return requested === base || requested.startsWith(`${base}/`)
}
