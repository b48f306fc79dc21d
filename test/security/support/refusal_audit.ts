/**
 * How a refusal must show up in the audit log. Two cases, decided by whether the caller is known:
 *
 * - known: the subject token verified (a real IAM caller). Every refusal, whatever refused it (the
 *   form parser, the policy, a lifetime, a repeated parameter), leaves exactly one `token.denied`
 *   record carrying the request's id, and no `token.issued` record.
 * - unknown: nobody the broker can name (garbage, forged or expired token, wrong content type, a body
 *   too large to read). Writing one record per such request would let anyone flood the chain, so these
 *   are only counted, and the counts are written as aggregate records from time to time. Per request:
 *   no record at all with its id.
 *
 * The aggregate's shape and how to flush it on demand live in ONE function below,
 * `flushAndCountAnonymousRefusals`, so the integrator can adapt it to the refusals work without
 * touching the tests.
 */
import type { AuditRecord } from '../../../src/audit/audit_log.ts'
import type { SecurityBroker } from './security_broker.ts'

export type Caller = 'known' | 'unknown'

/** Per-request audit view: everything committed with this request id. */
export function recordsOf(records: readonly AuditRecord[], requestId: string): AuditRecord[] {
  return records.filter((r) => r.event.requestId === requestId)
}

/** Null when the request's records match the contract for its caller, else what is wrong. */
export function denialAuditProblem(records: readonly AuditRecord[], requestId: string, caller: Caller): string | null {
  const mine = recordsOf(records, requestId)
  const issued = mine.filter((r) => r.event.type === 'token.issued')
  if (issued.length > 0) return `token.issued recorded for refused request ${requestId}`
  const denied = mine.filter((r) => r.event.type === 'token.denied')
  if (caller === 'known') {
    if (denied.length !== 1) return `a refusal of a verified caller must leave exactly one token.denied record with its request id; found ${denied.length}`
    return null
  }
  if (mine.length !== 0) return `a refusal of an unknown caller must not be written one by one; found ${mine.length} record(s) with its request id (${mine.map((r) => r.event.type).join(', ')})`
  return null
}

/**
 * ADAPTATION POINT. Flushes the broker's counters of refusals of unknown callers into the audit log and
 * returns how many refusals the aggregate records written since `sinceSeq` account for.
 *
 * The broker counts them in `services.refusals` (src/audit/refusal_tally.ts); `flush({ force: true })`
 * writes the pending counts as one `token.denied.aggregate` record (no request id) whose `detail.count`
 * is the number of refusals it stands for, and resolves once it is committed.
 */
export async function flushAndCountAnonymousRefusals(sb: SecurityBroker, sinceSeq: number): Promise<number> {
  await sb.broker.services.refusals.flush({ force: true })
  const records = await sb.auditSince(sinceSeq)
  return records
    .filter((r) => r.event.type === 'token.denied.aggregate' && r.event.requestId === undefined && typeof r.event.detail?.count === 'number')
    .reduce((n, r) => n + (r.event.detail!.count as number), 0)
}
