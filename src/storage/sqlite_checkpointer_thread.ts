// Worker-thread entry for the WAL checkpointer (sqlite_checkpointer.ts): its own connection copies WAL
// frames back into the database file with PASSIVE checkpoints, one each time the writer thread asks, so
// that the bulk of the copying and the database fsync happen beside the writer instead of inside one of
// its commits. PASSIVE never takes the write lock: the writer keeps committing during a pass.
import { workerData } from 'node:worker_threads'
import { SLOT, type CheckpointerData } from './sqlite_checkpointer.ts'
import { openExistingSqlite } from './sqlite_existing.ts'

const { file, synchronous, state: buffer } = workerData as CheckpointerData
const state = new Int32Array(buffer)
const db = openExistingSqlite(file)
// A checkpoint fsyncs the database file before the WAL may be reused, unless synchronous is OFF: keep
// the store's own setting (never OFF).
db.exec(`PRAGMA synchronous = ${synchronous.toUpperCase()}`)
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')

// From 0, not the current count: the writer may have asked before this thread was up.
let served = 0
try {
  // Bounded by the stop flag, which close() sets (and notifies) before waiting for this thread's exit.
  while (Atomics.load(state, SLOT.stop) === 0) {
    Atomics.wait(state, SLOT.requested, served)
    if (Atomics.load(state, SLOT.stop) !== 0) break
    served = Atomics.load(state, SLOT.requested)
    const t0 = performance.now()
    const r = checkpoint.get() as { busy: number; log: number; checkpointed: number }
    Atomics.store(state, SLOT.micros, Math.round((performance.now() - t0) * 1000))
    Atomics.store(state, SLOT.log, r.log)
    Atomics.store(state, SLOT.checkpointed, r.checkpointed)
    Atomics.store(state, SLOT.done, served)
  }
} finally {
  db.close()
}
