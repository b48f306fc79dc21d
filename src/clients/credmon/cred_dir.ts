import { closeSync, constants, fstatSync, futimesSync, lstatSync, openSync, readdirSync, readSync, rmSync, unlinkSync } from 'node:fs'
import { replaceFileAtomic } from '../../lib/secure_file.ts'

/** What the credmon needs to know of a file. */
export interface FileInfo {
  /** Epoch seconds, with fractions. */
  mtime: number
  isDirectory: boolean
  /**
   * A regular file: the only kind the credmon reads. A FIFO planted at a credential's name would make a
   * read wait for a writer, stopping every user's refresh.
   */
  isFile: boolean
  /** Device and inode: the same name may hold another file (or directory) than it did a moment ago. */
  id: string
}

/** What readText returns for a regular file longer than it reads. */
export const FILE_TOO_LARGE = Symbol('file too large')

/**
 * The credential directory as the credmon sees it. Injected so tests can fail a write or watch every
 * change; `nodeCredDirFs` is the real one.
 */
export interface CredDirFs {
  /** Entry names of a directory; empty when it does not exist. */
  list(dir: string): string[]
  /** Does not follow symbolic links: a link planted in a user directory is not a credential. */
  stat(path: string): FileInfo | undefined
  /**
   * A regular file's text; undefined for anything else at the path (a link, a FIFO), or none. At most
   * `maxBytes` are read: a longer file is FILE_TOO_LARGE. The credmon runs as root and these files hold what a
   * user chose (a `.top` is the storer's output, stored by condor_store_cred): one of gigabytes read whole at
   * every scan took seconds each time and the memory to hold it.
   */
  readText(path: string, maxBytes: number): string | typeof FILE_TOO_LARGE | undefined
  /** Temp file in the same directory, fsync, rename(): a reader sees the old file or the new one. */
  writeAtomic(path: string, data: string, mode: number): void
  remove(path: string): void
  /**
   * Removes a regular file and says whether it did. Anything else at the path (a symbolic link, a
   * directory, nothing) is left alone: a credential's files are regular files, and a link planted in
   * their place is not followed nor taken for one.
   */
  removeFile(path: string): boolean
  /**
   * Creates the file when missing and sets its times to now, on a regular file of its own at the name: a
   * symbolic or hard link planted there is replaced, never followed.
   */
  touch(path: string): void
}

export const nodeCredDirFs: CredDirFs = {
  list(dir) {
    try { return readdirSync(dir) } catch { return [] }
  },
  stat(path) {
    try {
      // bigint: inode numbers past 2^53 (Lustre's flattened identifiers, some NFS servers' file ids) would
      // round, and adjacent ones (a file and the one created right after it) read as the same file.
      const s = lstatSync(path, { bigint: true })
      if (s.isSymbolicLink()) return undefined
      // Microseconds are exact in a number, and whole seconds stay whole.
      return { mtime: Number(s.mtimeNs / 1000n) / 1e6, isDirectory: s.isDirectory(), isFile: s.isFile(), id: `${s.dev}:${s.ino}` }
    } catch {
      return undefined
    }
  },
  readText(path, maxBytes) {
    let fd: number | undefined
    try {
      // Judged by what was opened, not by the stat a moment before (the name may since be a FIFO, whose read
      // would wait for a writer and stop every user's refresh, or a link): not followed, not waited on.
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
      const st = fstatSync(fd)
      if (!st.isFile()) return undefined
      if (st.size > maxBytes) return FILE_TOO_LARGE
      // One byte more than allowed, to tell a file that grew since the fstat from one that is exactly maxBytes.
      const buf = Buffer.alloc(maxBytes + 1)
      let n = 0
      for (;;) {
        const got = readSync(fd, buf, n, buf.length - n, null)
        if (got === 0) break
        n += got
        if (n > maxBytes) return FILE_TOO_LARGE
      }
      return buf.toString('utf8', 0, n)
    } catch {
      return undefined
    } finally {
      if (fd !== undefined) closeSync(fd)
    }
  },
  writeAtomic(path, data, mode) {
    replaceFileAtomic(path, data, mode)
  },
  remove(path) {
    rmSync(path, { force: true })
  },
  removeFile(path) {
    try {
      if (!lstatSync(path).isFile()) return false
      // unlink() removes the name itself, never what a link would point to.
      unlinkSync(path)
      return true
    } catch {
      return false
    }
  },
  touch(path) {
    // The credential directory is writable by the credd's group and we run as root: a name there is never
    // followed. A link (or a hard link to another file) planted at the name is removed, not touched through.
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK
    let fd: number
    try {
      fd = openSync(path, flags, 0o644)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOOP') throw err
      unlinkSync(path)
      fd = openSync(path, flags | constants.O_EXCL, 0o644)
    }
    try {
      const st = fstatSync(fd)
      if (!st.isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: 'ENOTFILE' })
      if (st.nlink > 1) {
        closeSync(fd)
        fd = -1
        unlinkSync(path)
        closeSync(openSync(path, flags | constants.O_EXCL, 0o644))
        return
      }
      const now = new Date()
      futimesSync(fd, now, now)
    } finally {
      if (fd >= 0) closeSync(fd)
    }
  },
}
