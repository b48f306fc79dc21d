import { quote } from '../lib/quote.ts'
import type { VerifiedSubject } from './subject.ts'

/**
 * Why a verified caller's token is refused as delegated, or undefined when it is the caller's own.
 *
 * RFC 8693 §4.1: `act` names the party acting for the subject; IAM writes it into every token it issues by
 * token exchange (`act: {sub: <client>}`, docs/iam-and-wlcg.md §1.4). Such a token is the user's authority
 * already handed to another client once. Accepting it here would let that client, or anyone holding its
 * output (the narrowed IAM tokens this broker hands out carry `act` too), turn it into pool credentials as
 * the user: a second hop the user never asked this broker for, and one the audit record would show as the
 * user's own request. The broker does not take `actor_token` for the same reason (RFC 8693 §2.1).
 */
export function delegationRefusal(subject: Pick<VerifiedSubject, 'claims'>): string | undefined {
  const act = subject.claims.act
  if (act === undefined) return undefined
  const actor = act !== null && typeof act === 'object' && typeof (act as { sub?: unknown }).sub === 'string' ? (act as { sub: string }).sub : undefined
  return actor !== undefined
    ? `delegation not supported: subject_token was issued to ${quote(actor)} acting for its subject (act claim); present the caller's own IAM token`
    : "delegation not supported: subject_token carries an act claim (issued to another party acting for its subject); present the caller's own IAM token"
}
