// Worker-thread entry for the SQLite audit writer. node:sqlite is synchronous: inserting and fsyncing a
// batch on the main thread would stall every request for the duration. Here the commit runs beside the
// event loop, which keeps minting and filling the next batch meanwhile.
import { parentPort, workerData } from 'node:worker_threads'
import type { WriteOp } from './chained_store.ts'
import { openSqliteDb, SqliteChainWriter, type SqliteOpenOptions } from './sqlite_writer.ts'

export interface WriterRequest { id: number; ops: WriteOp[] }
export type WriterReply = { id: number; results: unknown[] } | { id: number; error: string }

const db = openSqliteDb(workerData as SqliteOpenOptions)
const writer = new SqliteChainWriter(db)
parentPort!.on('message', (msg: WriterRequest | 'close') => {
  if (msg === 'close') { db.close(); parentPort!.close(); return }
  let reply: WriterReply
  try {
    reply = { id: msg.id, results: writer.commit(msg.ops) }
  } catch (err) {
    reply = { id: msg.id, error: (err as Error).message ?? String(err) }
  }
  parentPort!.postMessage(reply)
})
parentPort!.postMessage({ id: 0, results: [] } satisfies WriterReply)
