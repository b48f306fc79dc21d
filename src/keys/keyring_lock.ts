import { randomUUID } from 'node:crypto'
import { closeSync, constants, fstatSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync, type Stats } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { OperatorError } from '../errors.ts'

/**
 * Who holds a keyring lock. The pid alone does not name a process across restarts: in a container the
 * broker is pid 1 at every start, and a systemd restart may hand a pid on, so a lock a killed change left
 * would name a process that runs again. Boot id and start time (Linux /proc) name that one run of it;
 * host and pid namespace say where the pid means anything (another replica sharing keys/ over NFS,
 * another container on the volume: kill(pid, 0) answers only for this namespace's processes).
 */
interface LockOwner { pid: number; host?: string; pidns?: string; boot?: string; start?: string }

/**
 * No keyring change holds the lock this long (it generates at most two keys and writes a few files,
 * synchronously): a lock older than this is taken over whoever wrote it, the only test there is for one
 * from another host or pid namespace (a container restarted after an unclean stop has a new one).
 */
export const KEYRING_LOCK_STALE_MS = 120_000

/** The locks this process holds now (a change nested in another's, as a test's seam runs one). */
const heldHere = new Set<string>()

/**
 * Runs `change` (synchronous) holding `<dir>/.keyring.lock`. The lock is written whole to a temporary
 * file and linked into place, which fails if one exists: there is never an empty lock file for a crash
 * (or a full disk) to leave behind. A lock whose process is gone is taken over.
 */
export function withKeyringLock<T>(dir: string, waitMs: number, change: () => T): T {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const lock = join(dir, '.keyring.lock')
  const mine = `${JSON.stringify({ ...currentOwner(process.pid), nonce: randomUUID() })}\n`
  const deadline = Date.now() + waitMs
  for (;;) {
    const attempt = tryCreate(lock, mine)
    if (attempt.created) break
    const found = lstatOrNull(lock)
    if (found === null) continue // released meanwhile
    const text = readLockText(lock)
    const holder = text === undefined ? undefined : parseOwner(text)
    if (attempt.fsNow - found.mtimeMs > KEYRING_LOCK_STALE_MS || (holder !== undefined && isGone(holder, heldHere.has(lock)))) {
      takeOver(lock, found)
      continue
    }
    if (Date.now() >= deadline) {
      const who = holder === undefined ? 'another process' : `process ${holder.pid}${whereElse(holder)}`
      throw new OperatorError('EKEYRINGLOCK', `the SciToken keyring is being changed by ${who} (${lock}); run this again once it is done, or remove ${lock} if no such process runs (it is taken over ${KEYRING_LOCK_STALE_MS / 1000} s after it was made)`)
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25)
  }
  heldHere.add(lock)
  try {
    return change()
  } finally {
    heldHere.delete(lock)
    // Only our own: one taken over meanwhile is its new holder's to remove.
    if (readLockText(lock) === mine) rmSync(lock, { force: true })
  }
}

/**
 * Links a fresh lock into place. `fsNow` is the mtime of the temporary file just written: "now" by the
 * clock that also stamped the lock found there. Over NFS that is the file server's, and this host's
 * Date.now() minus it is off by their skew: a host two minutes ahead took a replica's fresh lock for stale.
 */
function tryCreate(lock: string, content: string): { created: boolean; fsNow: number } {
  const tmp = `${lock}.${process.pid}.${randomUUID()}.tmp`
  writeFileSync(tmp, content, { mode: 0o600, flag: 'wx' })
  try {
    const fsNow = lstatSync(tmp).mtimeMs
    try {
      linkSync(tmp, lock)
      return { created: true, fsNow }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { created: false, fsNow }
      throw err
    }
  } finally {
    rmSync(tmp, { force: true })
  }
}

/**
 * Removes a stale lock only if it is still the file judged stale: it is renamed aside first (one of two
 * processes taking it over wins that), and one that turns out to be another's fresh lock is linked back.
 */
function takeOver(lock: string, judged: Stats): void {
  const aside = `${lock}.${process.pid}.${randomUUID()}.stale`
  try {
    renameSync(lock, aside)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  try {
    const moved = lstatOrNull(aside)
    if (moved !== null && (moved.ino !== judged.ino || moved.dev !== judged.dev || moved.mtimeMs !== judged.mtimeMs)) {
      try { linkSync(aside, lock) } catch { /* a third took the free lock meanwhile: it holds it */ }
    }
  } finally {
    rmSync(aside, { force: true })
  }
}

/** Whether the process a lock names is known to be gone; only a lock from this host and pid namespace says. */
function isGone(holder: LockOwner, heldHere: boolean): boolean {
  const here = currentOwner(process.pid)
  if (holder.host !== undefined && holder.host !== here.host) return false
  if (holder.pidns !== undefined && holder.pidns !== here.pidns) return false
  if (holder.boot !== undefined && here.boot !== undefined && holder.boot !== here.boot) return true
  // One naming this process that it does not hold is an earlier run's with the same pid.
  if (holder.pid === process.pid) return !heldHere
  if (!processRuns(holder.pid)) return true
  const start = currentOwner(holder.pid).start
  return holder.start !== undefined && start !== undefined && holder.start !== start
}

/**
 * Where a holder's pid means something when that is not here: a pid from another namespace is not one
 * to look up in this one (a restarted container's broker is pid 1 itself and would find it running).
 */
function whereElse(holder: LockOwner): string {
  if (holder.host !== undefined && holder.host !== hostname()) return ` on ${oneLine(holder.host)}`
  if (holder.pidns !== undefined && holder.pidns !== currentOwner(process.pid).pidns) return ` in pid namespace ${oneLine(holder.pidns)}`
  return ''
}

/** Text from the lock file as it may go into a one-line message: no control characters. */
function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]/g, '?')
}

function currentOwner(pid: number): LockOwner {
  const boot = readOrUndefined('/proc/sys/kernel/random/boot_id')?.trim()
  let pidns: string | undefined
  try { pidns = readlinkSync('/proc/self/ns/pid') } catch { /* not Linux */ }
  // Field 22 of /proc/<pid>/stat, counted after the command name, which may hold spaces and parentheses.
  const stat = readOrUndefined(`/proc/${pid}/stat`)
  const start = stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  return { pid, host: hostname(), ...(pidns ? { pidns } : {}), ...(boot ? { boot } : {}), ...(start ? { start } : {}) }
}

/** A lock's owner: JSON, or the bare pid 8fd0271 wrote; undefined when it is neither. */
function parseOwner(text: string): LockOwner | undefined {
  try {
    const o = JSON.parse(text) as unknown
    if (typeof o === 'number') return Number.isSafeInteger(o) && o > 0 ? { pid: o } : undefined
    if (typeof o !== 'object' || o === null) return undefined
    const r = o as Record<string, unknown>
    if (!Number.isSafeInteger(r.pid) || (r.pid as number) <= 0) return undefined
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined)
    return { pid: r.pid as number, host: str(r.host), pidns: str(r.pidns), boot: str(r.boot), start: str(r.start) }
  } catch {
    return undefined
  }
}

/** Whether process `pid` runs in this pid namespace (EPERM: it does, under another uid). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

/**
 * A lock's text, undefined when it is no regular file or cannot be read: opened non-blocking and not
 * through a link, as a FIFO there would block a starting serve instead of letting it wait and say why.
 */
function readLockText(lock: string): string | undefined {
  let fd: number | undefined
  try {
    fd = openSync(lock, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW)
    return fstatSync(fd).isFile() ? readFileSync(fd, 'utf8') : undefined
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
}
