import type { AuditEvent } from '../audit/audit_log.ts'
import { jtiSecond } from '../lib/jti.ts'

/**
 * Renewal chains of pilot tokens, kept beside the audit log so that every replica, and the broker after a
 * restart, answers "was this token already renewed, and by what" from the store (docs/pilots.md, "Renewal
 * chains and reuse"). One row per pilot token that was renewed or retired (renewalKey); a pilot renewing
 * with its newest token costs one insert into it, in the transaction that appends the renewal's record.
 *
 * After OAuth 2.0 refresh-token rotation (RFC 9700 §4.14.2): presenting a token that was already renewed is
 * reuse, unless it looks like a pilot retrying after it lost the answer (the token's successor was never
 * renewed with). A retry retires the successor it replaces (its row says `superseded`), so a chain forked
 * under cover of a retry is caught when the losing side renews next. The retries are not capped: a cap adds
 * no such check (each retry already retires the one before), and the sbatch pilot presents one token as
 * often as its backoff allows until that token expires, so any cap revoked an honest pilot behind a proxy
 * that lost its answers (docs/pilots.md, "Renewal chains and reuse").
 */
export const PILOT_RENEWALS_TABLE = (integer: string, withoutRowid: boolean) => `CREATE TABLE IF NOT EXISTS pilot_renewals (
     second ${integer} NOT NULL, jti TEXT NOT NULL, successor TEXT NOT NULL, renewed_at ${integer} NOT NULL,
     expires ${integer} NOT NULL, retries INT NOT NULL, superseded INT NOT NULL,
     PRIMARY KEY (second, jti))${withoutRowid ? ' WITHOUT ROWID' : ''};`

/**
 * A row's key: the second the jti tells (lib/jti.ts), then the jti. Keyed by the jti alone, every row went
 * to a random place in the index (a jti is uniform), which nearly doubled what a renewal cost SQLite's
 * writer (bench/pilot_renewals.ts); pilots renew their tokens in about the order they got them, so rows
 * keyed by second go in near the index's end. A jti the broker did not make (none reaches here but in
 * tests) keys under second 0.
 */
export function renewalKey(jti: string): [number, string] {
  return [jtiSecond(jti) ?? 0, jti]
}

/** What the pilot pipeline asks of one renewal. */
export interface PilotRenewal {
  /** The presented token's jti (the record's `detail.replaces`). */
  replaces: string
  /** No token of this pilot lives past it (its job end): the rows of its chain may go after it. */
  expires: number
}

/**
 * A renewal's refusal as the pipeline prepares it: its record without `reason`, which the store adds (one of
 * RenewalRefusalReasons) only when it refuses. Almost every renewal is renewed: one refusal record per
 * renewal, not one for each way it might be refused, is what the hot path builds and sends to the writer.
 */
export type RenewalRefusal = Omit<AuditEvent, 'reason'> & { reason?: never }

/** The `reason` of a refused renewal's record (docs/audit.md: `<oauth error>: <description>`), by the refusal. */
export interface RenewalRefusalReasons {
  /** The presented token was renewed already and this is no retry (`detail.reuse`). */
  readonly reused: string
  /** The attempt was minted before the answer already given (`detail.stale`). */
  readonly stale: string
}

/**
 * One renewal, judged and recorded in one transaction: `json` is the renewal's record, `refusalJson` its
 * refusal without a reason, completed inside with `reusedReason` and the jti and successor should the presented
 * token turn out to be reused, with `staleReason` and the same should it be an attempt older than the answer
 * already given. Plain strings: the op crosses to SQLite's writer thread by structured clone.
 */
export interface RenewOp extends PilotRenewal {
  kind: 'renew'
  /** The new token's jti and the renewal's time, as its record (`json`) states them. */
  successor: string
  time: number
  json: string
  refusalJson: string
  reusedReason: string
  staleReason: string
  result?: RenewalOutcome
}

/**
 * What a renewal got: renewed (`supersedes`: the successor of an earlier renewal of the same token, retired
 * by this retry), or refused, naming the successor the presented token already has: as reuse, or (`stale`) as
 * an attempt minted before that successor was (the pilot holds the later answer), which revokes nothing.
 */
export type RenewalOutcome = { renewed: true; supersedes?: string } | { renewed: false; successor: string; stale?: true }

/**
 * A pilot_renewals row as a backend reads it (`retries`: how often the token was retried, for the record;
 * `renewed_at`: when the renewal that made the current successor was minted).
 */
export interface RenewalRow { successor: string; retries: number | string; superseded: number | string | boolean; renewed_at: number | string }

/**
 * Whether a token already renewed (`row`) may be renewed again as a retry. Not when it was retired, nor
 * when its successor was renewed with (the pilot had the answer).
 */
export function mayRetry(row: RenewalRow, successorRenewed: boolean): boolean {
  return !Number(row.superseded) && !successorRenewed
}

/** The renewal's record as a retry: it names the successor it retired. */
export function retryEvent(e: AuditEvent, supersedes: string): AuditEvent {
  return { ...e, detail: { ...e.detail, supersedes } }
}

/** The refusal's record of an attempt older than the answer given: which jti it presented, and the later successor. */
export function staleEvent(refusal: RenewalRefusal, reason: string, jti: string, successor: string): AuditEvent {
  return { ...refusal, reason, detail: { ...refusal.detail, stale: { jti, successor } } }
}

/** The refusal's record of a reused token: which jti was presented again, and which successor it has. */
export function reuseEvent(refusal: RenewalRefusal, reason: string, jti: string, successor: string): AuditEvent {
  return { ...refusal, reason, detail: { ...refusal.detail, reuse: { jti, successor } } }
}

/** The record a settled renewal committed, for whoever reports on it (metrics). */
export function recordOf(renewed: AuditEvent, refusal: RenewalRefusal, reasons: RenewalRefusalReasons, replaces: string, outcome: RenewalOutcome): AuditEvent {
  if (!outcome.renewed) {
    return outcome.stale ? staleEvent(refusal, reasons.stale, replaces, outcome.successor) : reuseEvent(refusal, reasons.reused, replaces, outcome.successor)
  }
  return outcome.supersedes === undefined ? renewed : retryEvent(renewed, outcome.supersedes)
}

/** The SQL each SQL backend runs for a renewal, with its placeholders; a jti goes in as renewalKey(jti). */
export function renewalSql(p: (i: number) => string) {
  const key = `second = ${p(1)} AND jti = ${p(2)}`
  return {
    insert: `INSERT INTO pilot_renewals (second, jti, successor, renewed_at, expires, retries, superseded) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, 0, 0) ON CONFLICT (second, jti) DO NOTHING`,
    read: `SELECT successor, retries, superseded, renewed_at FROM pilot_renewals WHERE ${key}`,
    renewed: `SELECT 1 AS one FROM pilot_renewals WHERE ${key}`,
    // Placeholders in the order they appear: SQLite numbers `?` by position.
    retry: `UPDATE pilot_renewals SET successor = ${p(1)}, renewed_at = ${p(2)}, retries = retries + 1 WHERE second = ${p(3)} AND jti = ${p(4)}`,
    retire: `INSERT INTO pilot_renewals (second, jti, successor, renewed_at, expires, retries, superseded) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, 0, 1) ON CONFLICT (second, jti) DO NOTHING`,
    prune: `DELETE FROM pilot_renewals WHERE expires < ${p(1)}`,
  }
}

/** The table operations a backend supplies for a renewal (synchronous: SQLite's writer, memory). */
export interface RenewalTable {
  /** Inserts the row of a token just renewed; false when it already has one. */
  insert(jti: string, successor: string, renewedAt: number, expires: number): boolean
  read(jti: string): RenewalRow | undefined
  /** Whether a token has a row (was renewed, or retired). */
  has(jti: string): boolean
  /** A retry: the token's successor becomes `successor`, minted at `renewedAt`, one retry more. */
  retry(jti: string, successor: string, renewedAt: number): void
  /** The row of a successor a retry retired. */
  retire(jti: string, successor: string, renewedAt: number, expires: number): void
}

/** The same, for a backend whose statements are asynchronous (PostgreSQL). */
export type AsyncRenewalTable = { [K in keyof RenewalTable]: (...a: Parameters<RenewalTable[K]>) => Promise<ReturnType<RenewalTable[K]>> }

/** One renewal against the table, inside the backend's transaction: the record to append, and the outcome. */
export function applyRenewal(op: RenewOp, t: RenewalTable): { json: string; result: RenewalOutcome } {
  const { successor, time } = op
  // The hot path: the pilot presents its newest token, which has no row yet.
  if (t.insert(op.replaces, successor, time, op.expires)) return { json: op.json, result: { renewed: true } }
  const row = t.read(op.replaces)!
  const outcome = judged(op, row, t.has(row.successor))
  if (outcome.result.renewed) { t.retry(op.replaces, successor, time); t.retire(row.successor, successor, time, op.expires) }
  return outcome
}

/** applyRenewal, for a backend whose statements are asynchronous. */
export async function applyRenewalAsync(op: RenewOp, t: AsyncRenewalTable): Promise<{ json: string; result: RenewalOutcome }> {
  const { successor, time } = op
  if (await t.insert(op.replaces, successor, time, op.expires)) return { json: op.json, result: { renewed: true } }
  const row = (await t.read(op.replaces))!
  const outcome = judged(op, row, await t.has(row.successor))
  if (outcome.result.renewed) { await t.retry(op.replaces, successor, time); await t.retire(row.successor, successor, time, op.expires) }
  return outcome
}

/**
 * A token renewed before, presented again: a retry (renewed, retiring its earlier successor), reuse, or an
 * attempt minted before the successor was (stale). The stale one is what a pilot leaves behind when its attempt
 * is held up before its commit past curl's --max-time and its retry commits first: the pilot has the later
 * answer, so retiring it would revoke the pilot at its next renewal. Refusing it issues nothing and retires
 * nothing, so it lets no fork live either. Same-second attempts cannot be ordered and are judged as retries.
 */
function judged(op: RenewOp, row: RenewalRow, successorRenewed: boolean): { json: string; result: RenewalOutcome } {
  if (!mayRetry(row, successorRenewed)) {
    return { json: JSON.stringify(reuseEvent(JSON.parse(op.refusalJson) as RenewalRefusal, op.reusedReason, op.replaces, row.successor)), result: { renewed: false, successor: row.successor } }
  }
  if (op.time < Number(row.renewed_at)) {
    return { json: JSON.stringify(staleEvent(JSON.parse(op.refusalJson) as RenewalRefusal, op.staleReason, op.replaces, row.successor)), result: { renewed: false, successor: row.successor, stale: true } }
  }
  return { json: JSON.stringify(retryEvent(JSON.parse(op.json) as AuditEvent, row.successor)), result: { renewed: true, supersedes: row.successor } }
}
