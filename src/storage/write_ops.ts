import type { AuditEvent, PruneResult } from '../audit/audit_log.ts'
import type { CredentialConfirmation, CredentialWrite } from '../credentials/credential_store.ts'
import type { SessionWrite } from '../console/session_store.ts'
import type { NewRevocation, Revocation, RevocationLift } from '../revocation/revocation.ts'
import type { RedeemOp } from './pilot_redemptions.ts'
import type { RenewOp } from './pilot_renewals.ts'
import type { PRUNE_RANGE_CHANGED, PruneRange } from './prune_range.ts'

/** One queued write. Results are filled in by the backend inside the transaction. */
export type WriteOp =
  | { kind: 'event'; json: string }
  | { kind: 'revoke'; rev: NewRevocation; event: AuditEvent; result?: Revocation }
  /** `result` stays undefined (and nothing is appended) when the entry is unknown or already lifted. */
  | { kind: 'lift'; lift: RevocationLift; json: string; result?: Revocation }
  /**
   * Deletes records `range.first..range.through`, one chunk of the prefix the chain was found to vouch for
   * (ChainedStore.prune), and appends its checkpoint; `renewals`: also drops the ended pilots' renewal rows.
   * `result` is PRUNE_RANGE_CHANGED (nothing deleted, nothing appended) when the log changed since the check.
   */
  | { kind: 'prune'; before: number; now: number; range: PruneRange; renewals: boolean; result?: PruneResult | typeof PRUNE_RANGE_CHANGED }
  | RedeemOp
  | RenewOp
  /** A credential change and its record, together or not at all; `result` false (nothing appended) when a rotate or revoke changed nothing. */
  | { kind: 'credential'; write: CredentialWrite; json: string; result?: boolean }
  /**
   * A console session row: written in a batch's transaction like the others (for SQLite by the writer
   * thread, so no second connection contends for the write lock), but not an audit record: nothing is appended.
   */
  | { kind: 'session'; write: SessionWrite }
  /** IAM's confirmation kept on a credential row; not an audit record (the tokens minted under it record it). */
  | { kind: 'confirm'; confirm: CredentialConfirmation; result?: boolean }

/**
 * The sealed audit anchor (audit/anchor.ts), written by the SQLite writer thread in a batch's transaction:
 * on the store's own connection the write waited for another process's write lock (the writer's 5 s busy
 * timeout) on the event loop, freezing every request once per check. Not an audit record: nothing is appended.
 */
export interface AnchorOp { kind: 'anchor'; sealed: string }

/** What the SQLite writer commits: every write op, and the anchor. */
export type SqliteWriteOp = WriteOp | AnchorOp

/** The ops that hand a `result` back to their caller: all but an event, a console session write and an anchor. */
export function returnsResult(op: SqliteWriteOp): op is Exclude<WriteOp, { kind: 'event' | 'session' }> {
  return op.kind !== 'event' && op.kind !== 'session' && op.kind !== 'anchor'
}
