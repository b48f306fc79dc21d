import type { Revocation } from '../revocation/revocation.ts'

/** Record types that state revocations: the partial index `audit_revocation_records` covers exactly these. */
export const REVOCATION_RECORD_TYPES = ['token.revoked', 'token.unrevoked', 'audit.checkpoint'] as const

/**
 * SQL condition selecting REVOCATION_RECORD_TYPES. Both SQL backends create the partial index
 * `audit_revocation_records` with this very text, so SQLite can prove the index applies.
 */
export const REVOCATION_RECORDS_WHERE = `type IN (${REVOCATION_RECORD_TYPES.map((t) => `'${t}'`).join(', ')})`

/** Whether a record of this type states revocations (judged on the hashed body's type, never the column alone). */
export function statesRevocations(type: string): boolean {
  return (REVOCATION_RECORD_TYPES as readonly string[]).includes(type)
}

/**
 * The query the broker enforces from (listRevocations with activeAt), `param` being the backend's placeholder.
 * readRevocationState runs the very same text, so the consistency check sees what the planner answers it with.
 */
export function activeRevocationsSql(param: string): string {
  return `SELECT * FROM revocations WHERE until >= ${param} AND lifted_at IS NULL ORDER BY id`
}

/**
 * The time a check asks the active query at. Any time would do (the check filters the whole table at the
 * same one); the wall clock is what the refresh asks with, so the planner answers the check as it answers it.
 */
export function activeCheckTime(): number {
  return Math.floor(Date.now() / 1000)
}

/** A `revocations` row as either SQL backend returns it (PostgreSQL BIGINTs may come back as strings). */
export interface RevocationRow {
  id: number | string
  kind: Revocation['kind']
  value: string
  revoked_at: number | string
  until: number | string
  gen: number | string | null
  reason: string | null
  revoked_by: string | null
  iss: string | null
  lifted_at: number | string | null
  lifted_by: string | null
}

export function fromRevocationRow(r: RevocationRow): Revocation {
  return {
    id: Number(r.id), kind: r.kind, value: r.value, revokedAt: Number(r.revoked_at), until: Number(r.until),
    ...(r.gen !== null ? { gen: Number(r.gen) } : {}),
    ...(r.reason !== null ? { reason: r.reason } : {}),
    ...(r.revoked_by !== null ? { revokedBy: r.revoked_by } : {}),
    ...(r.iss !== null ? { iss: r.iss } : {}),
    ...(r.lifted_at !== null ? { liftedAt: Number(r.lifted_at) } : {}),
    ...(r.lifted_by !== null ? { liftedBy: r.lifted_by } : {}),
  }
}

/**
 * Schema step for lifts and issuer-bound revocations, shared by both SQL backends: the partial index is
 * rebuilt over REVOCATION_RECORDS_WHERE, which now includes `token.unrevoked`.
 */
export const LIFT_AND_ISS_MIGRATION = `ALTER TABLE revocations ADD COLUMN iss TEXT;
   ALTER TABLE revocations ADD COLUMN lifted_at BIGINT;
   ALTER TABLE revocations ADD COLUMN lifted_by TEXT;
   DROP INDEX IF EXISTS audit_revocation_records;
   CREATE INDEX audit_revocation_records ON audit_log (seq) WHERE ${REVOCATION_RECORDS_WHERE};`
