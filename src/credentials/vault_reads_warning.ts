import type { Logger } from '../lib/logger.ts'
import type { Policy } from '../policy/compile.ts'
import type { PolicyHolder } from '../policy/policy_holder.ts'

const NO_VAULT_READS = 'the Vault-compatible listener is enabled but no grant in the policy sets fetched_by.vault_reads: true: every Vault read will be refused (403 permission denied)'

/** Whether some grant of the policy lets the Vault-compatible listener serve a read (credd_fetch.ts vaultMayRead). */
export function someGrantAllowsVaultReads(policy: Policy): boolean {
  return policy.rules.some((rule) => [...rule.grants.values()].some((grant) => grant.fetchedBy?.vaultReads === true))
}

/**
 * Warns now, and after each reload that swaps the policy in force, while the policy has no grant that allows
 * Vault reads. The listener then refuses every read "permission denied", on which HTCondor's Vault credmon
 * deletes the user's .top: without this line the first sign would be users' vanished credentials. The line
 * carries the policy digest and the reload trigger only (no names from the policy, nothing secret).
 * Returns the unsubscribe function.
 */
export function warnWhileNoGrantAllowsVaultReads(policy: Pick<PolicyHolder, 'current' | 'onReload'>, log: Logger): () => void {
  if (!someGrantAllowsVaultReads(policy.current)) log.warn(NO_VAULT_READS, { digest: policy.current.digest })
  // A refused reload keeps the policy in force, which was already reported when it was loaded.
  return policy.onReload((e) => {
    if (e.ok && !someGrantAllowsVaultReads(policy.current)) log.warn(NO_VAULT_READS, { trigger: e.trigger, digest: e.digest })
  })
}
