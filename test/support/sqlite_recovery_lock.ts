/**
 * Another process caught in the middle of rebuilding a SQLite database's WAL index (SQLite's "recovery",
 * which the first connection after a crash runs): it holds the WRITE, CKPT and RECOVER locks of the -shm
 * file (bytes 120-122, sqlite's wal.c) while the index header is not yet consistent. Every connection that
 * starts a read meanwhile is told SQLITE_BUSY_RECOVERY and waits out its busy timeout: a real lock another
 * process holds, the way a read on a busy store fails in production. The write locks only a connection
 * can hold for long (BEGIN EXCLUSIVE) do not stop WAL readers, so they cannot stand in for it.
 *
 * POSIX record locks are per process and Node has no fcntl(), so the holder is a small python3 program;
 * on release it puts the header's bytes back before its locks go, so no recovery is needed afterwards.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const HOLDER = `
import fcntl, os, sys
fd = os.open(sys.argv[1] + '-shm', os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 3, 120)
orig = os.pread(fd, 4, 0)
os.pwrite(fd, bytes(b ^ 0xff for b in orig), 0)
print('held', flush=True)
sys.stdin.read()
os.pwrite(fd, orig, 0)
`

export interface RecoveryLock { release(): Promise<void> }

/** What to install when python3 cannot be run: .ci/run installs it, a developer's machine may lack it. */
const NO_PYTHON = 'python3 is needed to hold a SQLite lock from another process (test/support/sqlite_recovery_lock.ts) and cannot be run: apt-get install python3'

/**
 * Holds `dbFile`'s WAL index as a process in recovery would, until release(). The file must be open in WAL
 * mode. `python` is the interpreter to run (a test of the message for a missing one names a path that is not there).
 */
export async function holdWalRecovery(dbFile: string, options: { python?: string } = {}): Promise<RecoveryLock> {
  const child = spawn(options.python ?? 'python3', ['-c', HOLDER, dbFile], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = once(child, 'exit')
  const held = new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve())
    child.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? new Error(NO_PYTHON, { cause: err }) : err))
    exited.then(([code]) => reject(new Error(`the lock holder exited with ${String(code)} before holding the locks`)), () => { /* the spawn failed: its error is the one told */ })
  })
  try {
    await held
  } catch (err) {
    child.kill()
    throw err
  }
  return {
    async release() {
      child.stdin.end()
      const [code] = await exited as [number | null]
      if (code !== 0) throw new Error(`the lock holder exited with ${String(code)}`)
    },
  }
}

/** The same holder, started before the lock is wanted: it takes the locks when `go` appears, then makes `held`. */
const ARMED_HOLDER = `
import fcntl, os, sys, time
go, held = sys.argv[2], sys.argv[3]
for _ in range(10000):
    if os.path.exists(go): break
    time.sleep(0.002)
else:
    sys.exit(3)
fd = os.open(sys.argv[1] + '-shm', os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 3, 120)
orig = os.pread(fd, 4, 0)
os.pwrite(fd, bytes(b ^ 0xff for b in orig), 0)
open(held, 'w').close()
sys.stdin.read()
os.pwrite(fd, orig, 0)
`

export interface ArmedRecoveryLock extends RecoveryLock {
  /**
   * Takes the lock now and returns once it is held, synchronously: for a test that must have it between two
   * statements of one asynchronous operation (called from a hook the operation runs in between).
   */
  holdNow(): void
}

/** holdWalRecovery, but the lock is taken only at holdNow() (within 5 s; the holder gives up after 20 s unarmed). */
export function armWalRecovery(dbFile: string): ArmedRecoveryLock {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-armed-'))
  const go = join(dir, 'go')
  const held = join(dir, 'held')
  const child = spawn('python3', ['-c', ARMED_HOLDER, dbFile, go, held], { stdio: ['pipe', 'inherit', 'inherit'] })
  const exited = once(child, 'exit')
  const pause = new Int32Array(new SharedArrayBuffer(4))
  return {
    holdNow() {
      writeFileSync(go, '')
      for (let i = 0; i < 1000 && !existsSync(held); i++) Atomics.wait(pause, 0, 0, 5)
      if (!existsSync(held)) throw new Error('the armed lock holder did not take the lock within 5 s')
    },
    async release() {
      child.stdin.end()
      const [code] = await exited as [number | null]
      rmSync(dir, { recursive: true, force: true })
      if (code !== 0) throw new Error(`the lock holder exited with ${String(code)}`)
    },
  }
}
