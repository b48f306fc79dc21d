// The jti index's background pass (sqlite_store.ts: started when our writer's rows follow another process's)
// read on the store's connection outside the guarded read path: during the pause after a read waited out a
// lock (at most one read in each second waits, docs/audit.md) it tried the file anyway and held the event
// loop for the whole read busy timeout. Here the pass is started by the reply of a commit made just before
// another process took the lock (which does not end the pause), with a record of another process before it.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { SERVING_READ_BUSY_TIMEOUT_MS, SERVING_READ_LOCK_BACKOFF_MS, SqliteStore } from '../../src/storage/sqlite_store.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-jtipause-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

// As test/support/sqlite_recovery_lock.ts, but it takes the locks only when `go` appears and says so in `held`.
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

it('the jti index\'s background pass keeps the pause after a locked read, and catches up once the lock is gone', async () => {
  const file = join(dir, 'audit.db')
  const go = join(dir, 'go')
  const held = join(dir, 'held')
  const store = new SqliteStore({ file })
  const child = spawn('python3', ['-c', HOLDER, file, go, held], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = once(child, 'exit')
  let released = false
  const release = async () => { if (!released) { released = true; child.stdin.end(); await exited } }
  try {
    // A jti that does not tell its record's second (lib/jti.ts), so the index holds an entry for it.
    await store.record({ type: 'token.issued', time: 1_700_000_000, jti: 'j-0' })
    await once(child.stdout, 'data')
    // Another process appends (a second broker on the file, the CLI): our writer's next rows no longer follow what the index holds.
    const other = new SqliteStore({ file, writer: 'inline' })
    await other.record({ type: 'token.issued', time: 1_700_000_001, jti: 'j-other' })
    await other.close()
    const peek = new DatabaseSync(file, { readOnly: true })
    const rows = () => Number((peek.prepare('SELECT COUNT(*) AS n FROM audit_log').get() as { n: number }).n)
    const before = rows()
    // The writer thread idle again (it says so after its checkpoint work), so the next op is posted in a
    // microtask, not at setImmediate, which the held loop below would never reach.
    await new Promise((r) => setTimeout(r, 100))
    // Posted to the writer thread, then the loop is held until it committed: its reply waits in the queue.
    const writing = store.record({ type: 'token.issued', time: 1_700_000_002, jti: 'j-2' })
    await Promise.resolve()
    await Promise.resolve()
    blockUntil(() => rows() > before)
    peek.close()
    writeFileSync(go, '')
    blockUntil(() => existsSync(held))
    // A read meets the lock: one wait on the loop, then the pause.
    expect(await store.readCredential('ada', 'cms').then(() => undefined, (e: unknown) => e)).toBeInstanceOf(AuditStoreUnavailable)
    // The commit's reply starts the pass; within the pause it must not wait on the file.
    const t = performance.now()
    await writing
    const held2 = performance.now() - t
    console.log(`jti index pass started within the pause after a locked read: the event loop was held ${Math.round(held2)} ms`)
    expect(held2).toBeLessThan(SERVING_READ_BUSY_TIMEOUT_MS / 2)
    await release()
    // Past the pause, a lookup by jti brings the index up to the head and finds every record.
    await new Promise((r) => setTimeout(r, SERVING_READ_LOCK_BACKOFF_MS + 100))
    expect((await store.query({ jti: 'j-other', limit: 10 })).records.map((r) => r.seq)).toEqual([2])
    expect((await store.query({ jti: 'j-2', limit: 10 })).records.map((r) => r.seq)).toEqual([3])
    expect(store.jtiIndexState().through).toBe(3)
  } finally {
    await release()
    await store.close()
  }
}, 30_000)
