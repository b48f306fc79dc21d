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

/** Whether `c` is one `*` may stand for (GLOB_CHAR). */
function isGlobChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x2e || c === 0x2d
}

/**
 * A pattern with several `*`, matched by stepping every possible position in the pattern along the value at
 * once: time proportional to pattern length × value length. As a RegExp, `*.*.*.*.x` is a chain of
 * `[A-Za-z0-9_.-]*\.` whose runs can each take the dots, and a value that almost matches makes the
 * backtracking engine try every split (about 10^12 for 8 stars and a 253-character host), on the event loop.
 * One `*` leaves a single split point, which the RegExp handles in linear time.
 */
function starMatcher(pattern: string): (value: string) => boolean {
  const m = pattern.length
  return (value) => {
    let live = new Uint8Array(m + 1)
    let next = new Uint8Array(m + 1)
    const close = (set: Uint8Array) => { for (let i = 0; i < m; i++) if (set[i] && pattern.charCodeAt(i) === 0x2a) set[i + 1] = 1 }
    live[0] = 1
    close(live)
    for (let k = 0; k < value.length; k++) {
      const c = value.charCodeAt(k)
      next.fill(0)
      let any = false
      for (let i = 0; i < m; i++) {
        if (!live[i]) continue
        const p = pattern.charCodeAt(i)
        if (p === 0x2a) { if (isGlobChar(c)) { next[i] = 1; any = true } } else if (p === c) { next[i + 1] = 1; any = true }
      }
      if (!any) return false
      close(next)
      const spent = live
      live = next
      next = spent
    }
    return live[m] === 1
  }
}

/** Compiles patterns (exact strings, or globs with `*`) into one matcher. Case-sensitive unless `ignoreCase` (ASCII case only). */
export function compilePatterns(patterns: readonly string[], options: { ignoreCase?: boolean } = {}): CompiledPatterns {
  const norm = (s: string) => (options.ignoreCase ? asciiLower(s) : s)
  const exact = new Set<string>()
  const globs: string[] = []
  const manyStars: Array<(value: string) => boolean> = []
  for (const p of patterns) {
    const parts = p.split('*')
    if (parts.length === 1) exact.add(norm(p))
    else if (parts.length === 2) globs.push(parts.map((part) => escapeRegExp(norm(part))).join(`${GLOB_CHAR}*`))
    else manyStars.push(starMatcher(norm(p)))
  }
  const re = globs.length > 0 ? new RegExp(`^(?:${globs.join('|')})$`) : undefined
  return {
    test: (value) => {
      const v = norm(value)
      return exact.has(v) || (re !== undefined && re.test(v)) || manyStars.some((match) => match(v))
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
