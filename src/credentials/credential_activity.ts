import type { AuditEvent, AuditStore } from '../audit/audit_log.ts'
import type { StoredCredential } from './credential_store.ts'

/** Records looked at per credential before giving up on finding its last job token. */
export const ACTIVITY_SCAN_LIMIT = 1000
const PAGE = 200

/** A credential with the last job token the audit log shows for its current registration. */
export interface CredentialActivity {
  credential: StoredCredential
  /**
   * `found`: the newest `token.issued` record for this credential since it was registered; `none`: no such
   * record (never fetched, or pruned); `beyond`: not among the newest ACTIVITY_SCAN_LIMIT candidates.
   */
  lastToken: { state: 'found'; time: number; seq: number } | { state: 'none' } | { state: 'beyond' }
}

/** The credential a job-token record was obtained for (`detail.credential`), if any. */
function credentialOf(e: AuditEvent): { user: string; provider: string } | undefined {
  const c = e.detail?.credential as { user?: unknown; provider?: unknown } | undefined
  return c && typeof c.user === 'string' && typeof c.provider === 'string' ? { user: c.user, provider: c.provider } : undefined
}

/**
 * When each credential last gave its jobs a token: an IAM refresh (kind iam) or a broker mint (kind
 * scitoken), as the audit log records it before the token leaves. The credential row only knows when IAM
 * last rotated the refresh token, which IAM may never do; the audit knows every token obtained. A cached
 * token handed out again writes no record, so this is the last refresh, not the last fetch.
 *
 * Each lookup is one indexed query narrowed to the credential's user (the IAM `sub` a refreshed token is
 * issued to; the registrant a minted token is issued for), newest first, since the registration.
 */
export async function credentialActivity(credentials: readonly StoredCredential[], audit: Pick<AuditStore, 'query'>): Promise<CredentialActivity[]> {
  const out: CredentialActivity[] = []
  for (const credential of credentials) out.push({ credential, lastToken: await lastToken(credential, audit) })
  return out
}

async function lastToken(c: StoredCredential, audit: Pick<AuditStore, 'query'>): Promise<CredentialActivity['lastToken']> {
  const narrow = c.kind === 'iam' ? { issuedSub: c.sub } : { caller: c.sub }
  let cursor: string | undefined
  let seen = 0
  // Bounded: at most ACTIVITY_SCAN_LIMIT / PAGE pages.
  while (seen < ACTIVITY_SCAN_LIMIT) {
    const page = await audit.query({ type: 'token.issued', from: c.createdAt, limit: PAGE, ...narrow, ...(cursor ? { cursor } : {}) })
    for (const r of page.records) {
      const of = credentialOf(r.event)
      if (of && of.user === c.user && of.provider === c.provider) return { state: 'found', time: r.event.time, seq: r.seq }
    }
    seen += page.records.length
    if (page.nextCursor === undefined) return { state: 'none' }
    cursor = page.nextCursor
  }
  return { state: 'beyond' }
}
