import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Config } from '../config.ts'
import type { BrokerStore } from './chained_store.ts'
import type { GroupCommitOptions } from './group_commit.ts'
import { SqliteStore } from './sqlite_store.ts'
import type { AuditMacKey } from '../audit/record_mac.ts'
import { auditMacKeyFile, ensureAuditMacKeyFile, readAuditMacKey } from '../keys/audit_mac_key.ts'
import { OperatorError } from '../errors.ts'
import { isProduction } from '../production.ts'

/** Where the SQLite audit file lives: audit.sqlite.file, else <data_dir>/audit.db. */
export function sqliteAuditFile(config: Config): string {
  return config.audit.sqlite.file ?? join(config.data_dir, 'audit.db')
}

/**
 * Opens the configured audit/revocation store (creating or migrating its schema). `serve` writes SQLite
 * as audit.sqlite.writer says (by default from a writer thread, with its checkpointer, and a jti index
 * built in the background); a CLI command writes at most a record or two, so it commits inline and
 * starts no thread.
 */
export async function openBrokerStore(config: Config, options: { sqliteWriter?: 'thread' | 'inline'; auditMac?: AuditMacKey; readOnly?: boolean } = {}): Promise<BrokerStore> {
  // Every record a store opened here appends carries a MAC, and every check it runs checks them (ChainedStore):
  // no command writes without the key. A command that only reads may pass the key it could read, or none.
  const auditMac = 'auditMac' in options ? options.auditMac : await writerAuditMacKey(config)
  const store = await openBackend(config, options.sqliteWriter, auditMac, options.readOnly === true)
  // Without the key the store can only read: a write would append a record without a MAC.
  if (!auditMac) store.refuseWrites()
  return store
}

/**
 * The bound on each statement of a command that only reads, when audit.postgres.query_timeout_seconds is 0
 * (no bound, for serve's statements). Such a command's statements each read a bounded chunk of the log (at
 * most 5,000 records) or an indexed count, far under it; without one, a command run from cron against a
 * server that stopped answering, or a table another session holds locked, waited for good. The setting's own
 * default, so a reader gets what serve gets unless serve's was raised; a reader that needs longer sets
 * CTB_AUDIT_POSTGRES_QUERY_TIMEOUT_SECONDS for that command.
 */
export const READER_QUERY_TIMEOUT_SECONDS = 30

async function openBackend(config: Config, sqliteWriter: 'thread' | 'inline' | undefined, auditMac: AuditMacKey | undefined, readOnly = false): Promise<BrokerStore> {
  const mac = { ...(auditMac ? { auditMac } : {}), ...(readOnly ? { readOnly } : {}) }
  const gc = config.audit.group_commit
  const groupCommit: GroupCommitOptions = { maxBatch: gc.max_batch, maxWaitMs: gc.max_wait_ms, maxPending: gc.max_pending }
  if (config.audit.store === 'postgres') {
    // Loaded only for this backend: the pg driver is resident weight an SQLite broker never uses.
    const { PostgresStore } = await import('./postgres_store.ts')
    const pgc = config.audit.postgres
    return PostgresStore.open({
      dsn: pgc.dsn!, poolSize: pgc.pool_size, groupCommit,
      queryTimeoutMs: (readOnly && pgc.query_timeout_seconds === 0 ? READER_QUERY_TIMEOUT_SECONDS : pgc.query_timeout_seconds) * 1000,
      longQueryTimeoutMs: pgc.long_query_timeout_seconds * 1000, ...mac,
    })
  }
  return new SqliteStore({ file: sqliteAuditFile(config), synchronous: config.audit.sqlite.synchronous, groupCommit, writer: sqliteWriter ?? config.audit.sqlite.writer, ...mac })
}

/**
 * The key for a command that writes. In production a missing key is the operator's to provide (`keys init`,
 * then copy it), never made up by one replica or a CLI on its own, which would leave the others with a
 * different key. Outside production it is created on first use, as serve creates its signing keys there,
 * but only for a log with no MACs yet: once records carry MACs under a key, a new one (another key id)
 * would leave every one of them failing its check for good, so a lost key must come back from a backup.
 */
async function writerAuditMacKey(config: Config): Promise<AuditMacKey> {
  const file = auditMacKeyFile(config)
  if (isProduction(config) || existsSync(file)) return readAuditMacKey(file)
  const began = await auditLogMacsBeganAt(config)
  if (began !== undefined) throw new OperatorError('EAUDITMACKEY', `${lostAuditMacKey(file, began)}; nothing was written`)
  ensureAuditMacKeyFile(file)
  return readAuditMacKey(file)
}

/**
 * Where MACs began in the configured log, asked without the key (undefined: none yet). A store is opened
 * only to ask (once, on the first write of a fresh setup, or at `keys init`); no SQLite file yet means no
 * log, and none is created to find that out.
 */
export async function auditLogMacsBeganAt(config: Config): Promise<number | undefined> {
  if (config.audit.store !== 'postgres' && !existsSync(sqliteAuditFile(config))) return undefined
  const probe = await openBackend(config, 'inline', undefined)
  try {
    probe.refuseWrites()
    return await probe.macsBeganAt()
  } finally {
    await probe.close()
  }
}

/**
 * Whether the configured audit log exists, asked without creating it (opening a store creates the SQLite file
 * and the PostgreSQL schema): for a command that only reads, which must leave a wrong path or database as it
 * found it. On PostgreSQL, the broker's schema-version table stands for the log (the first thing migrate makes).
 */
export async function auditLogExists(config: Config): Promise<boolean> {
  if (config.audit.store !== 'postgres') return existsSync(sqliteAuditFile(config))
  const { default: pg } = await import('pg')
  const client = new pg.Client({ connectionString: config.audit.postgres.dsn!, connectionTimeoutMillis: 5000, query_timeout: 5000 })
  // An error on an idle client must not crash the command; the query below reports the failure.
  client.on('error', () => {})
  try {
    await client.connect()
    const r = await client.query<{ present: boolean }>("SELECT to_regclass('ctb_schema_version') IS NOT NULL AS present")
    return r.rows[0]?.present === true
  } catch (err) {
    // The message of a pg error never contains the DSN; say which step failed, not where it pointed.
    throw new OperatorError('EAUDITSTORE', `cannot open the PostgreSQL audit store: ${(err as Error).message}`, { cause: err })
  } finally {
    await client.end().catch(() => {})
  }
}

/** Why a missing key file must come back from a backup rather than be made anew (the caller says what it did not do). */
export function lostAuditMacKey(file: string, began: number): string {
  return `the audit MAC key file ${file} is missing, but the audit log carries MACs since seq ${began}: restore the key file from a backup (a new key would leave every MAC'd record failing its check)`
}

/** What a reading command found of the audit MAC key (tryAuditMacKey): the key, or why it could not be read. */
export type AuditMacReading = { key: AuditMacKey } | { problem: string }

/**
 * The key for a command that only reads (`audit verify`, `audit list`, ...): the key, or why it could not be
 * read. Never created here, even outside production: a reader that made one up for a log already carrying
 * MACs would leave them failing their check; without the key the MACs are reported unchecked instead.
 */
export function tryAuditMacKey(config: Config): AuditMacReading {
  try {
    return { key: readAuditMacKey(auditMacKeyFile(config)) }
  } catch (err) {
    return { problem: (err as Error).message }
  }
}

/**
 * openBrokerStore's options for a CLI command, which commits inline. A reader (`mac` from tryAuditMacKey)
 * opens the log read-only (nothing created, set or migrated: reader_checks.ts) and passes the `auditMac`
 * option even without a key (undefined), as that is what keeps openBrokerStore from loading, or outside
 * production making up, the writer's key; the store it gets refuses writes. A writer (`mac` undefined)
 * passes neither, so openBrokerStore loads the writer's key and the schema is migrated if need be.
 */
export function cliStoreOptions(mac: AuditMacReading | undefined): { sqliteWriter: 'inline'; auditMac?: AuditMacKey | undefined; readOnly?: true } {
  return mac ? { sqliteWriter: 'inline', auditMac: 'key' in mac ? mac.key : undefined, readOnly: true } : { sqliteWriter: 'inline' }
}
