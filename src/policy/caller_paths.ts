import type { Rule } from './schema.ts'
import type { SourcePosition } from './compile.ts'
import { parseTemplate } from './template.ts'

/**
 * Grant scope paths naming the caller (`/store/user/{preferred_username}`) across the whole policy. Each
 * directory tree that holds callers' directories must have one owner, an IAM and one of its values: alice at
 * one IAM and alice at another are two people but one `/store/user/alice`, and under one IAM a user whose
 * preferred_username is another's sub would get that user's `/store/user/{sub}` directory. Trees overlap when
 * one's literal prefix starts with the other's (`/store/{sub}` with sub `user` covers `/store/user/...`), unless
 * the two grants' tokens go to different storage (literal, disjoint audiences: a path means nothing elsewhere).
 */

interface Owner { prefix: string; owner: string; where: string; scope: string; audiences?: ReadonlySet<string> }

/** The grant's audiences when all are literal; undefined when a glob (or none) could name any storage. */
function literalAudiences(audiences: readonly string[] | undefined): ReadonlySet<string> | undefined {
  return audiences && audiences.length > 0 && !audiences.some((a) => a.includes('*')) ? new Set(audiences) : undefined
}

/** Whether two grants' tokens can reach one storage element: unless both name only literal, disjoint audiences. */
function sameStorage(a: ReadonlySet<string> | undefined, b: ReadonlySet<string> | undefined): boolean {
  return !a || !b || [...a].some((x) => b.has(x))
}

/** An issuer without its trailing slash: one IAM written both ways is one owner (as checkSeveralIams counts it). */
function issuerKey(iss: string): string {
  return iss.endsWith('/') ? iss.slice(0, -1) : iss
}

/** One line per grant scope whose callers' directories overlap another owner's. */
export function sharedCallerPathIssues(rules: readonly { rule: Rule; source: SourcePosition }[]): { source: SourcePosition; message: string }[] {
  const seen: Owner[] = []
  const out: { source: SourcePosition; message: string }[] = []
  for (const { rule, source } of rules) {
    const issuers = [...new Set(rule.match.issuer.map(issuerKey))].sort().join(' ')
    for (const g of rule.grants) {
      for (const scope of g.scopes ?? []) {
        const parsed = parseTemplate(scope)
        if ('error' in parsed) continue
        const first = parsed.parts.find((p) => 'placeholder' in p)
        if (!first || !('placeholder' in first)) continue
        const path = scope.slice(scope.indexOf(':') + 1)
        const prefix = path.slice(0, path.indexOf('{'))
        const owner = `{${first.placeholder}} of ${issuers}`
        const audiences = literalAudiences(g.audiences)
        const clash = seen.find((o) => o.owner !== owner && (o.prefix.startsWith(prefix) || prefix.startsWith(o.prefix)) && sameStorage(o.audiences, audiences))
        if (clash) {
          out.push({ source, message: `rule "${rule.id}", role ${g.role}: scope "${scope}" names ${owner}, and its callers' directories overlap those of scope "${clash.scope}" (${clash.where}), which names ${clash.owner}; give each IAM and each placeholder its own directory tree (or its own storage audience)` })
          continue
        }
        seen.push({ prefix, owner, scope, where: `rule at ${source.file}:${source.line}:${source.col}`, ...(audiences ? { audiences } : {}) })
      }
    }
  }
  return out
}
