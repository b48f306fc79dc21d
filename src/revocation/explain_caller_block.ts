import type { CallerBlockSource } from './revocation_checker.ts'

/** The refusal policy explain states for a blocked caller: the token endpoint's, with the entry named. */
export interface CallerBlockDenial {
  allow: false
  error: 'unauthorized_client'
  reason: string
}

/**
 * What the token endpoint decides before it asks the policy: a caller an active `sub` or `client` entry
 * blocks is refused (unauthorized_client), for a token and a pilot enrolment alike. An explanation that only
 * asked the policy answered "allow" for such a caller, and `provision plan` planned enrolments that fail.
 */
export function explainCallerBlock(source: CallerBlockSource, caller: { iss: string; sub: string; client_id?: string | undefined }): CallerBlockDenial | undefined {
  const block = source.callerBlock(caller)
  if (!block) return undefined
  const r = block.revocation
  const entry = r ? ` by revocation ${r.id} (${r.kind} ${JSON.stringify(r.value)} ${r.iss !== undefined ? `at ${r.iss}` : 'at every trusted issuer'})` : ''
  return { allow: false, error: 'unauthorized_client', reason: `caller ${caller.sub} is blocked${entry}: ${block.reason}` }
}
