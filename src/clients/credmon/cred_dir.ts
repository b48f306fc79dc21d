import { closeSync, lstatSync, openSync, readdirSync, readFileSync, rmSync, utimesSync, chownSync } from 'node:fs'
import { replaceFileAtomic } from '../../lib/secure_file.ts'

/** What the credmon needs to know of a file: its modification time (epoch seconds) and owner. */
export interface FileInfo {
  mtime: number
  uid: number
  gid: number
  isDirectory: boolean
}

/**
 * The credential directory as the credmon sees it. Injected so tests can fail a write or watch every
 * change; `nodeCredDirFs` is the real one.
 */
export interface CredDirFs {
  /** Entry names of a directory; empty when it does not exist. */
  list(dir: string): string[]
  /** Does not follow symbolic links: a link planted in a user directory is not a credential. */
  stat(path: string): FileInfo | undefined
  readText(path: string): string | undefined
  /** Temp file in the same directory, fsync, rename(); then the owner, when one is given. */
  writeAtomic(path: string, data: string, mode: number, owner?: { uid: number; gid: number }): void
  remove(path: string): void
  /** Creates the file when missing and sets its times to now. */
  touch(path: string): void
}

export const nodeCredDirFs: CredDirFs = {
  list(dir) {
    try { return readdirSync(dir) } catch { return [] }
  },
  stat(path) {
    try {
      const s = lstatSync(path)
      if (s.isSymbolicLink()) return undefined
      return { mtime: s.mtimeMs / 1000, uid: s.uid, gid: s.gid, isDirectory: s.isDirectory() }
    } catch {
      return undefined
    }
  },
  readText(path) {
    try { return readFileSync(path, 'utf8') } catch { return undefined }
  },
  writeAtomic(path, data, mode, owner) {
    replaceFileAtomic(path, data, mode)
    // After the rename: chown on the live file only narrows who else may read it (mode is already 0600).
    if (owner) chownSync(path, owner.uid, owner.gid)
  },
  remove(path) {
    rmSync(path, { force: true })
  },
  touch(path) {
    const now = new Date()
    try {
      utimesSync(path, now, now)
    } catch {
      closeSync(openSync(path, 'a', 0o644))
    }
  },
}
