// The writer thread's commit ends a serving store's read pause (10a234d): the commit proves the file answered.
// Its word reaches the event loop as a message, handled only after whatever the loop is doing. A read that
// meets a lock taken after that commit waits the loop 250 ms (SERVING_READ_BUSY_TIMEOUT_MS) and starts the
// pause; the older commit's message, handled after it, must not end that pause: the lock is still held, and
// the next read would hold the loop another 250 ms (docs/audit.md: at most one read in each second waits).
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { SERVING_READ_BUSY_TIMEOUT_MS, SqliteStore } from '../../src/storage/sqlite_store.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-stalecommit-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

// As test/support/sqlite_recovery_lock.ts, but it takes the locks only when `go` appears and says so in `held`:
// the test waits for both synchronously, so the event loop handles nothing in between.
const HOLDER = `
import fcntl, os, sys, time
db, go, held = sys.argv[1:4]
fd = os.open(db + '-shm', os.O_RDWR)
print('ready', flush=True)
for _ in range(3000):
    if os.path.exists(go): break
    time.sleep(0.005)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 3, 120)
orig = os.pread(fd, 4, 0)
os.pwrite(fd, bytes(b ^ 0xff for b in orig), 0)
open(held, 'w').close()
sys.stdin.read()
os.pwrite(fd, orig, 0)
`

const sleeper = new Int32Array(new SharedArrayBuffer(4))
/** Waits, without turning the event loop, until `done` holds (bounded: 10 s). */
function blockUntil(done: () => boolean): void {
  for (let i = 0; i < 2000 && !done(); i++) Atomics.wait(sleeper, 0, 0, 5)
  expect(done()).toBe(true)
}

it('a commit made before a lock was taken does not end the pause that lock started', async () => {
  const file = join(dir, 'audit.db')
  const go = join(dir, 'go')
  const held = join(dir, 'held')
  const store = new SqliteStore({ file })
  const child = spawn('python3', ['-c', HOLDER, file, go, held], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = once(child, 'exit')
  try {
    await store.record({ type: 'token.issued', time: 1_700_000_000, jti: 'j-0' })
    await once(child.stdout, 'data')
    const peek = new DatabaseSync(file, { readOnly: true })
    const rows = () => Number((peek.prepare('SELECT COUNT(*) AS n FROM audit_log').get() as { n: number }).n)
    const before = rows()
    // The writer thread idle again (it says so only after its checkpoint work, after its reply): else the op
    // below is posted at setImmediate, which the held loop never reaches, and the wait for it ran out (2 of 7 runs).
    await new Promise((r) => setTimeout(r, 100))
    // Posted to the writer thread (a microtask), then the loop is held: its reply waits in the queue.
    const writing = store.record({ type: 'token.issued', time: 1_700_000_001, jti: 'j-1' })
    await Promise.resolve()
    await Promise.resolve()
    blockUntil(() => rows() > before)
    peek.close()
    // Now another process takes the lock, and a read meets it: 250 ms on the loop, then the pause.
    writeFileSync(go, '')
    blockUntil(() => existsSync(held))
    const first = store.readCredential('ada', 'cms').then(() => undefined, (e: unknown) => e)
    expect(await first).toBeInstanceOf(AuditStoreUnavailable)
    await writing
    // The lock is still held: the next read is refused at once, within the pause, not after another wait.
    const t = performance.now()
    expect(await store.readCredential('ada', 'cms').then(() => undefined, (e: unknown) => e)).toBeInstanceOf(AuditStoreUnavailable)
    expect(performance.now() - t).toBeLessThan(SERVING_READ_BUSY_TIMEOUT_MS / 2)
  } finally {
    child.stdin.end()
    await exited
    await store.close()
  }
}, 30_000)
