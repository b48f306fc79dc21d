import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { OperatorError } from '../errors.ts'

/**
 * Reads a secret file, refusing it when group or other may read or write it. HTCondor silently ignores
 * such key and token files (docs/htcondor-tokens.md §1.1, §1.5); we say so instead of failing later.
 *
 * The file is opened once and its mode checked with fstat(2) on that descriptor, which is then read: a
 * check by path and a read by path could look at two files, if the path was renamed over in between.
 * Symlinks are followed on purpose (no O_NOFOLLOW): certbot's live/ keys and Kubernetes secret volumes are
 * symlinks, and the mode checked is that of the file they name, the one read. O_NONBLOCK so a FIFO at the
 * path is refused by the check below instead of blocking start-up until something writes to it; it changes
 * nothing for a regular file. `seam.beforeRead` runs between the check and the read (tests). `anyMode` skips
 * the mode check only, for a file judged by its content rather than its mode (keys rotate --compromised
 * recognising one of the broker's keys restored with a looser mode).
 */
export function readSecretFile(path: string, seam: { beforeRead?: () => void; anyMode?: boolean } = {}): Buffer {
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    throw new OperatorError('ENOENT', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) throw new OperatorError('ENOTFILE', `${path} is not a regular file`)
    const mode = st.mode & 0o777
    if (!seam.anyMode && mode & 0o077) {
      throw new OperatorError(
        'EPERMS',
        `${path} has mode ${mode.toString(8).padStart(4, '0')}; key and token files must not be accessible to group or other (chmod 600 ${path})`,
      )
    }
    seam.beforeRead?.()
    return readFileSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * Writes a file with mode 0600 via a dot-prefixed temp file and rename(), so readers never see a partial
 * write; HTCondor skips dot-files in token and key directories (docs/htcondor-tokens.md §1.5).
 */
export function writeSecretFileAtomic(path: string, data: string | Uint8Array, options: { exclusive?: boolean } = {}): void {
  const dir = dirname(path)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  if (options.exclusive) {
    // O_EXCL: like HTCondor's collector creating POOL, never clobber an existing key.
    const fd = openSync(path, 'wx', 0o600)
    try {
      writeAll(fd, data)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    return
  }
  replaceFileAtomic(path, data, 0o600)
}

/**
 * `writeSecretFileAtomic` for a secret written on a request's path: the same 0600 dot-prefixed temp file,
 * fsync and rename, but through libuv's thread pool, so a slow disk holds up only the caller and not every
 * request the process serves. The directory is synced after the rename as well: once this resolves, the
 * new file is what a restart finds, even after the host itself went down. On failure the temp file is removed.
 */
export async function replaceSecretFileDurably(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    const file = await open(tmp, 'wx', 0o600)
    try {
      // open(2) applies the umask; the mode asked for is the mode the file gets.
      await file.chmod(0o600)
      await file.writeFile(data)
      await file.sync()
    } finally {
      await file.close()
    }
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined)
    throw err
  }
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}

/**
 * Replaces `path` via a dot-prefixed temp file in the same directory (fsynced, then renamed), so a
 * reader sees the old file or the new one, never part of one. The directory must exist. HTCondor skips
 * dot-files when it reads key, token and config directories (docs/htcondor-tokens.md §1.1, §1.5).
 * On any failure the temp file is removed: it may hold a secret nobody asked to keep.
 */
export function replaceFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  prepareFileReplacement(path, mode).commit(data)
}

/** A temp file created next to its target, not yet written: `commit` fills and renames it, `abort` removes it. */
export interface PendingReplacement {
  readonly path: string
  commit(data: string | Uint8Array): void
  /** Removes the temp file; harmless after `commit` or a second `abort`. */
  abort(): void
}

/**
 * The first half of `replaceFileAtomic`, for callers that must know a file can be written before they
 * produce what goes in it (a token is audited as issued once minted). Refuses a target that is a
 * directory, and creates no directory: the temp file is opened here, so a missing or unwritable
 * directory fails now, whoever runs it (root passes access(2) checks that open(2) then fails).
 */
export function prepareFileReplacement(path: string, mode: number): PendingReplacement {
  let target
  try {
    target = statSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err
  }
  if (target?.isDirectory()) throw Object.assign(new Error(`EISDIR: ${path} is a directory`), { code: 'EISDIR', path })
  // The credmon removes temp files of this exact shape left by a run killed mid-write (clients/credmon).
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  let fd: number | undefined = openSync(tmp, 'wx', mode)
  let settled = false
  const discard = () => {
    if (fd !== undefined) { try { closeSync(fd) } catch { /* already failing */ } fd = undefined }
    rmSync(tmp, { force: true })
  }
  // open(2) applies the umask: under 077 a 0644 config snippet would become 0600, unreadable to daemons
  // that are not root. The mode asked for is the mode the file gets.
  try {
    fchmodSync(fd, mode)
  } catch (err) {
    discard()
    throw err
  }
  return {
    path,
    commit(data) {
      if (settled) throw new TypeError(`replacement of ${path} already committed or aborted`)
      settled = true
      try {
        writeAll(fd!, data)
        fsyncSync(fd!)
        closeSync(fd!)
        fd = undefined
        renameSync(tmp, path)
      } catch (err) {
        discard()
        throw withPath(err, path)
      }
    },
    abort() {
      if (settled) return
      settled = true
      discard()
    },
  }
}

/**
 * A write or fsync that fails (ENOSPC, EIO) names a descriptor, not a file: the error gets the file it was
 * for, so whoever reports it (the CLI's one line) can say which file could not be written.
 */
function withPath(err: unknown, path: string): unknown {
  const e = err as NodeJS.ErrnoException
  if (typeof e === 'object' && e !== null && typeof e.code === 'string' && e.path === undefined) e.path = path
  return err
}

function writeAll(fd: number, data: string | Uint8Array): void {
  const buf = typeof data === 'string' ? Buffer.from(data) : data
  let off = 0
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off)
}
