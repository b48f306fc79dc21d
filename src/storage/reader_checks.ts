import { OperatorError } from '../errors.ts'

// What opening a log checks before it is read or written: that it is there (for a command that only reads,
// which must create none: pointed at the wrong place it would read an empty log as intact), and that its
// schema version suits this broker.

/** A reader found no SQLite log at `file` (nothing was created there). */
export function noSqliteLog(file: string): string {
  return `no audit log at ${file}: check audit.sqlite.file and data_dir (a relative data_dir is taken from the working directory); a command that only reads creates none`
}

/** A reader found no broker tables in the database the DSN names (nothing was created there). */
export const NO_POSTGRES_LOG = 'no audit log in the PostgreSQL database audit.postgres.dsn names (it holds no broker tables): check the DSN; a command that only reads creates none'

/**
 * Whether a log's schema version suits this broker, in the words both backends use. A newer one is never
 * opened (its columns and rows mean what a later broker says). An older one is migrated by whatever opens
 * it to write; a command that only reads leaves it as it is, so an auditor's `audit verify` with a newer
 * broker cannot change the schema under the replicas still running the version that wrote it (nor fail on
 * a copy it may not write).
 */
export function checkSchemaVersion(version: number, known: number, purpose: 'write' | 'read'): void {
  if (version > known) {
    throw new OperatorError('EAUDITSCHEMA', `the audit database has schema version ${version}, newer than this broker knows (${known}); upgrade the broker`)
  }
  if (purpose === 'read' && version < known) {
    throw new OperatorError('EAUDITSCHEMA', `the audit database has schema version ${version}, older than this broker's (${known}); a command that only reads does not migrate it: start this version's serve (which migrates) first, or read it with the version that wrote it`)
  }
}
