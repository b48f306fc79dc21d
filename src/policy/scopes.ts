import { AUTHZ_LEVELS, expandAuthz, type AuthzLevel } from '../issuance/authz.ts'
import { isNormalisedPath, pathCovers } from './patterns.ts'
import { asciiLower, asciiUpper } from '../lib/ascii_case.ts'
import { quote } from '../lib/quote.ts'

/**
 * Scope grammar for grants and requests: HTCondor `condor:/LEVEL`, WLCG `compute.*` and
 * `storage.<op>:/path`, SciTokens `<authz>:/path`, and plain scope names matched exactly.
 * @see docs/htcondor-tokens.md §3.1, §5.4; docs/iam-and-wlcg.md §2.2, §2.5
 */

const LEVELS: ReadonlySet<string> = new Set(AUTHZ_LEVELS)
export const COMPUTE_SCOPES = ['compute.read', 'compute.create', 'compute.modify', 'compute.cancel'] as const
/** HTCondor maps compute.* to WRITE only when all three of these are present (docs/htcondor-tokens.md §5.4). */
export const COMPUTE_WRITE_SCOPES = ['compute.create', 'compute.modify', 'compute.cancel'] as const
const STORAGE_OPS: ReadonlySet<string> = new Set(['read', 'create', 'modify', 'stage', 'poll'])
/**
 * Scope names whose path is a hierarchy, so a grant on `/a` covers `/a/b`: WLCG storage paths (§2.2) and
 * SciTokens authorizations (§2.5). Any other `name:/x` (`wlcg.groups:/cms`, `wlcg.capabilityset:/cms`)
 * names one group or set, and is allowed only as written.
 */
const HIERARCHICAL_SCOPES: ReadonlySet<string> = new Set([...[...STORAGE_OPS].map((op) => `storage.${op}`), 'read', 'write', 'queue', 'execute'])
/** Whether a grant on `name:/a` covers `name:/a/b` (storage and SciTokens paths), so a per-caller path can be granted. */
export function isHierarchicalScope(name: string): boolean {
  return HIERARCHICAL_SCOPES.has(name)
}
/** Scopes a grant may never hand out: refresh tokens never leave the broker (issue 4). */
const FORBIDDEN_SCOPES: ReadonlySet<string> = new Set(['offline_access'])

/** A level name from `READ`, `read` or `condor:/READ`; undefined if it is not one. */
export function toAuthzLevel(s: string): AuthzLevel | undefined {
  const name = asciiUpper(s.length > 8 && asciiLower(s.slice(0, 8)) === 'condor:/' ? s.slice(8) : s)
  return LEVELS.has(name) ? (name as AuthzLevel) : undefined
}

export type ParsedScope =
  | { kind: 'condor'; level: AuthzLevel; text: string }
  | { kind: 'path'; name: string; path: string; text: string }
  | { kind: 'exact'; text: string }

/** Parses one scope token, or says why it is not one. `compute.*` is a grant-side shorthand handled by the caller. */
export function parseScope(s: string): ParsedScope | { error: string } {
  if (s.length === 0 || s.length > 1024 || /[^\x21-\x7e]|["\\]/.test(s)) return { error: `scope ${quote(s)} is not a valid scope token` }
  if (/^condor:\//i.test(s)) {
    const level = toAuthzLevel(s)
    return level ? { kind: 'condor', level, text: `condor:/${level}` } : { error: `unknown HTCondor authorization level in ${quote(s)}; expected one of ${AUTHZ_LEVELS.join(', ')}` }
  }
  if (s.startsWith('compute.')) {
    return (COMPUTE_SCOPES as readonly string[]).includes(s) ? { kind: 'exact', text: s } : { error: `unknown compute scope ${quote(s)}; expected one of ${COMPUTE_SCOPES.join(', ')}` }
  }
  const colon = s.indexOf(':')
  if (colon > 0 && s[colon + 1] === '/') {
    const name = s.slice(0, colon)
    const path = s.slice(colon + 1)
    if (name.startsWith('storage.') && !STORAGE_OPS.has(name.slice(8))) return { error: `unknown storage scope ${quote(name)}` }
    if (!isNormalisedPath(path)) return { error: `path in ${quote(s)} must be absolute and normalised (no //, . or .. segments, no escapes)` }
    return { kind: 'path', name, path, text: s }
  }
  if (s.startsWith('storage.')) return storageWithoutPath(s)
  if (FORBIDDEN_SCOPES.has(s)) return { error: `scope ${quote(s)} is never issued: refresh tokens stay in the broker` }
  return { kind: 'exact', text: s }
}

/**
 * A storage scope with no absolute path (`storage.read`, `storage.read:data/x`): the example in the refusal
 * is built from the operation alone, so it is itself a valid scope (never `storage.read:data:/data`).
 */
function storageWithoutPath(s: string): { error: string } {
  const colon = s.indexOf(':')
  const name = colon < 0 ? s : s.slice(0, colon)
  if (!STORAGE_OPS.has(name.slice(8))) return { error: `unknown storage scope ${quote(name)}` }
  const relative = colon < 0 ? '' : s.slice(colon + 1)
  const example = relative !== '' && isNormalisedPath(`/${relative}`) ? `${name}:/${relative}` : `${name}:/data`
  return { error: `storage scope ${quote(s)} needs an absolute path, e.g. ${example}` }
}

/** The scopes a grant allows, prepared for O(1) checks (paths: a short list per scope name). */
export interface AllowedScopes {
  /** condor:/ levels after HTCondor's implication expansion, so narrower levels pass. */
  readonly condor: ReadonlySet<AuthzLevel>
  readonly exact: ReadonlySet<string>
  readonly paths: ReadonlyMap<string, readonly string[]>
  /** Issued when the request names no scope: the grant's list with `compute.*` expanded. */
  readonly defaults: readonly string[]
}

/** Compiles a grant's `scopes` list (already validated by the schema). */
export function compileAllowedScopes(scopes: readonly string[]): AllowedScopes {
  const levels: AuthzLevel[] = []
  const exact = new Set<string>()
  const paths = new Map<string, string[]>()
  const defaults: string[] = []
  const add = (text: string) => { if (!defaults.includes(text)) defaults.push(text) }
  for (const s of scopes) {
    if (s === 'compute.*') {
      for (const c of COMPUTE_SCOPES) { exact.add(c); add(c) }
      continue
    }
    const p = parseScope(s)
    if ('error' in p) throw new TypeError(`unvalidated scope reached compile: ${p.error}`)
    if (p.kind === 'condor') levels.push(p.level)
    else if (p.kind === 'exact') exact.add(p.text)
    else paths.set(p.name, [...(paths.get(p.name) ?? []), p.path])
    add(p.text)
  }
  return { condor: expandAuthz(levels), exact, paths, defaults }
}

/** Whether `requested` (already parsed) is within the grant. */
export function scopeAllowed(allowed: AllowedScopes, requested: ParsedScope): boolean {
  switch (requested.kind) {
    case 'condor': return allowed.condor.has(requested.level)
    case 'exact': return allowed.exact.has(requested.text)
    case 'path': {
      const granted = allowed.paths.get(requested.name) ?? []
      return HIERARCHICAL_SCOPES.has(requested.name) ? granted.some((g) => pathCovers(g, requested.path)) : granted.includes(requested.path)
    }
  }
}

/** The HTCondor levels a SciToken scope list yields (condor:/ directly; compute.* per the WLCG mapping). */
export function htcondorLevelsOfScopes(scopes: readonly string[]): Set<AuthzLevel> {
  const levels: AuthzLevel[] = []
  const all = new Set(scopes.flatMap((s) => (s === 'compute.*' ? [...COMPUTE_SCOPES] : [s])))
  for (const s of all) {
    const l = /^condor:\//i.test(s) ? toAuthzLevel(s) : undefined
    if (l) levels.push(l)
  }
  if (all.has('compute.read')) levels.push('READ')
  if (COMPUTE_WRITE_SCOPES.every((c) => all.has(c))) levels.push('WRITE')
  return expandAuthz(levels)
}
