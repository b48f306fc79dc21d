// Preloaded into a `serve` child (node --import) so that a test can make its SQLite writer thread crash the
// way a bug in it would: an exception nothing catches. SIGUSR2 to the process reaches the main thread,
// which passes it to the writer thread over a BroadcastChannel; the thread then throws. The writer thread
// is told from the checkpointer thread by its workerData (only the writer's carries maxBatch). Test only:
// nothing in src/ knows of it.
import { isMainThread, workerData } from 'node:worker_threads'

const channel = new BroadcastChannel('ctb-test-crash-writer')
if (isMainThread) {
  process.on('SIGUSR2', () => channel.postMessage('crash'))
  channel.unref()
} else if (workerData && typeof workerData === 'object' && 'maxBatch' in workerData) {
  channel.onmessage = () => { throw new Error('injected crash of the writer thread') }
  channel.unref()
} else {
  channel.close()
}
