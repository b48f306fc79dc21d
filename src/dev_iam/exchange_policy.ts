import type { DevIamExchangePolicy } from './dev_iam_config.ts'
import { anyCovers } from './scopes.ts'

export type ExchangeDecision =
  | { decision: 'PERMIT' }
  | { decision: 'DENY'; message: string }
  | { decision: 'INVALID_SCOPE'; scope: string }

/** IAM selector ranks: ANY < BY_ID (BY_SCOPE is not modelled). */
function rank(selector: string, clientId: string): number | undefined {
  if (selector === '*') return 0
  return selector === clientId ? 2 : undefined
}

/**
 * IAM's token-exchange PDP (DefaultTokenExchangePdp) in miniature: the applicable policy with the highest
 * rank (origin rank + destination rank) wins; at equal rank DENY wins; no applicable policy denies. A
 * winning PERMIT with `scopes` must cover every requested scope, otherwise `invalid_scope`.
 * @see docs/iam-and-wlcg.md §1.4 "Authorization layers", layer 2
 */
export function decideExchange(
  policies: readonly DevIamExchangePolicy[], originClientId: string, destinationClientId: string, scopes: readonly string[],
): ExchangeDecision {
  let best: { policy: DevIamExchangePolicy; rank: number } | undefined
  for (const policy of policies) {
    const o = rank(policy.origin, originClientId)
    const d = rank(policy.destination, destinationClientId)
    if (o === undefined || d === undefined) continue
    const r = o + d
    if (!best || r > best.rank || (r === best.rank && policy.rule === 'DENY')) best = { policy, rank: r }
  }
  if (!best) return { decision: 'DENY', message: 'No applicable policies found' }
  if (best.policy.rule === 'DENY') return { decision: 'DENY', message: 'Token exchange not allowed' }
  const allowed = best.policy.scopes
  if (allowed) {
    for (const s of scopes) if (!anyCovers(allowed, s)) return { decision: 'INVALID_SCOPE', scope: s }
  }
  return { decision: 'PERMIT' }
}
