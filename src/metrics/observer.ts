import type { AuditEvent } from '../audit/audit_log.ts'

/** Which IAM endpoint a call went to, as far as the request shows it. A fixed vocabulary: a metric label. */
export type IamCall = 'discovery' | 'jwks' | 'token' | 'introspection' | 'other'

/**
 * What the broker reports about its work, for metrics. The core never sees this: the composition root
 * wraps the parts the core already calls (the audit log, the refusal tally, the IAM fetch, the exchange),
 * so issuance stays as it is and a broker without metrics pays nothing. Implemented by BrokerMetrics.
 * Every method is synchronous, cheap and never throws into the request.
 */
export interface BrokerObserver {
  /**
   * An audit record of the token pipeline was submitted and settled: `committed` false when the store
   * refused it (then no token left). `seconds` is the wait for the commit.
   */
  audited(event: AuditEvent, committed: boolean, seconds: number): void
  /** A refusal with nobody to name (unreadable request, subject token that does not verify): `error` is its OAuth code. */
  refused(error: string): void
  /**
   * A POST /token refused with 503 because the audit store could not commit or be read: a refusal with no
   * record (issuance/unrecordable_refusal.ts), so audited and refused never hear of it.
   */
  refusedForStoreOutage(): void
  /** One POST /token answered with `status`, `seconds` after its exchange began. */
  tokenRequest(status: number, seconds: number): void
  /** One HTTP request to IAM: its answer's status, or the error that stood for an answer. */
  iamCall(call: IamCall, seconds: number, outcome: { status: number } | { error: unknown }): void
}
