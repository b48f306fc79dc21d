import { join } from 'node:path'
import type { Config } from '../config.ts'
import type { BrokerStore } from './chained_store.ts'
import type { GroupCommitOptions } from './group_commit.ts'
import { SqliteStore } from './sqlite_store.ts'

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
export async function openBrokerStore(config: Config, options: { sqliteWriter?: 'thread' | 'inline' } = {}): Promise<BrokerStore> {
  const gc = config.audit.group_commit
  const groupCommit: GroupCommitOptions = { maxBatch: gc.max_batch, maxWaitMs: gc.max_wait_ms, maxPending: gc.max_pending }
  if (config.audit.store === 'postgres') {
    // Loaded only for this backend: the pg driver is resident weight an SQLite broker never uses.
    const { PostgresStore } = await import('./postgres_store.ts')
    return PostgresStore.open({ dsn: config.audit.postgres.dsn!, poolSize: config.audit.postgres.pool_size, groupCommit })
  }
  return new SqliteStore({ file: sqliteAuditFile(config), synchronous: config.audit.sqlite.synchronous, groupCommit, writer: options.sqliteWriter ?? config.audit.sqlite.writer })
}
