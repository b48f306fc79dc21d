/**
 * Scope matching and `wlcg.groups` resolution as INDIGO IAM does them with its `wlcg-scopes` matchers
 * (docs/iam-and-wlcg.md §1.4 layer 1, §1.5, §2.2).
 */

/** Splits a space-delimited scope parameter, dropping empties and duplicates, keeping order. */
export function splitScope(scope: unknown): string[] {
  if (typeof scope !== 'string') return []
  return [...new Set(scope.split(' ').filter((s) => s.length > 0))]
}

/** True when `path` is absolute and free of `.`/`..` segments, so prefix matching is safe. */
function isCleanPath(path: string): boolean {
  return path.startsWith('/') && !path.split('/').some((seg) => seg === '.' || seg === '..')
}

/**
 * Does an allowed scope (a client's registered scope or a policy pattern) cover a requested one?
 * Exact match, or PATH semantics for parametric scopes: `storage.read:/cms` covers `storage.read:/cms/x`
 * but not `storage.read:/cmsx`; a bare `wlcg.groups` covers `wlcg.groups:/any/group`.
 */
export function scopeCovers(allowed: string, requested: string): boolean {
  if (allowed === requested) return true
  const r = requested.indexOf(':')
  if (r < 0) return false
  const rName = requested.slice(0, r)
  const rPath = requested.slice(r + 1)
  if (allowed === 'wlcg.groups' && rName === 'wlcg.groups') return true
  const a = allowed.indexOf(':')
  if (a < 0 || allowed.slice(0, a) !== rName) return false
  const aPath = allowed.slice(a + 1)
  if (!isCleanPath(aPath) || !isCleanPath(rPath)) return false
  if (aPath === '/') return true
  const base = aPath.endsWith('/') ? aPath : `${aPath}/`
  return rPath === aPath.replace(/\/$/, '') || rPath.startsWith(base)
}

/** True when some allowed scope covers `requested`. */
export function anyCovers(allowed: readonly string[], requested: string): boolean {
  return allowed.some((a) => scopeCovers(a, requested))
}

/**
 * The `wlcg.groups` claim for a user, or undefined when no group scope was requested (WLCG profile:
 * groups appear only on request). Explicitly requested groups the user holds come first, in request
 * order; the plain `wlcg.groups` (implicit whenever any group scope is asked) appends the rest; no
 * duplicates. Requested groups the user does not hold are ignored, as IAM does.
 */
export function resolveWlcgGroups(scopes: readonly string[], userGroups: readonly string[]): string[] | undefined {
  const groupScopes = scopes.filter((s) => s === 'wlcg.groups' || s.startsWith('wlcg.groups:'))
  if (groupScopes.length === 0) return undefined
  const held = new Set(userGroups)
  const out = new Set<string>()
  for (const s of groupScopes) {
    const g = s.slice('wlcg.groups:'.length)
    if (s !== 'wlcg.groups' && held.has(g)) out.add(g)
  }
  for (const g of userGroups) out.add(g)
  return [...out]
}
