// Preloaded into a `serve` child (node --import) so that a test can make its SQLite writer thread crash the
// way a bug in it would: an exception nothing catches. SIGUSR2 to the process reaches the main thread,
// which passes it to the writer thread over a BroadcastChannel; the thread then throws. The writer thread
// is told from the checkpointer thread by its workerData (only the writer's carries maxBatch). With
// TEST_CRASH_CHECKPOINTER_THREAD=1 the checkpointer thread instead dies as soon as the writer starts it. Test only:
// nothing in src/ knows of it.
import { isMainThread, workerData } from 'node:worker_threads'

const channel = new BroadcastChannel('ctb-test-crash-writer')
if (isMainThread) {
  process.on('SIGUSR2', () => channel.postMessage('crash'))
  channel.unref()
} else if (workerData && typeof workerData === 'object' && 'maxBatch' in workerData) {
  // TEST_CRASH_WRITER_THREAD_AT_START=1: dies before it has opened the database, while serve is starting.
  if (process.env.TEST_CRASH_WRITER_THREAD_AT_START === '1') { channel.close(); throw new Error('injected crash of the writer thread at its start') }
  channel.onmessage = () => { throw new Error('injected crash of the writer thread') }
  channel.unref()
} else {
  channel.close()
  // The checkpointer thread (its workerData carries the shared state): with TEST_CRASH_CHECKPOINTER_THREAD=1 it
  // dies as it starts, the way a bug in it would, saying so first so that a test knows it was reached.
  if (process.env.TEST_CRASH_CHECKPOINTER_THREAD === '1' && workerData && typeof workerData === 'object' && 'state' in workerData) {
    process.stderr.write('test: crashing the checkpointer thread\n')
    throw new Error('injected crash of the checkpointer thread')
  }
}
