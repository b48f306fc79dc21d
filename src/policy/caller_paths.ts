import type { Rule } from './schema.ts'
import type { SourcePosition } from './compile.ts'
import { parseTemplate } from './template.ts'

/**
 * Grant scope paths naming the caller (`/store/user/{preferred_username}`) across the whole policy. Each
 * directory tree that holds callers' directories must have one owner, an IAM and one of its values: alice at
 * one IAM and alice at another are two people but one `/store/user/alice`, and under one IAM a user whose
 * preferred_username is another's sub would get that user's `/store/user/{sub}` directory. Trees overlap when
 * one's literal prefix starts with the other's (`/store/{sub}` with sub `user` covers `/store/user/...`).
 */

interface Owner { prefix: string; owner: string; where: string; scope: string }

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
        const clash = seen.find((o) => o.owner !== owner && (o.prefix.startsWith(prefix) || prefix.startsWith(o.prefix)))
        if (clash) {
          out.push({ source, message: `rule "${rule.id}", role ${g.role}: scope "${scope}" names ${owner}, and its callers' directories overlap those of scope "${clash.scope}" (${clash.where}), which names ${clash.owner}; give each IAM and each placeholder its own directory tree` })
          continue
        }
        seen.push({ prefix, owner, scope, where: `rule at ${source.file}:${source.line}:${source.col}` })
      }
    }
  }
  return out
}
