import { accessSync, constants, realpathSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'

/** A file's permission bits as chmod takes them (0644, 1777), for messages that say what to change. */
export function modeString(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0')
}

/**
 * Whether every user may change the file or directory at `path` (its mode, `mode`, read from the descriptor
 * the caller reads through): o+w, on a file system that takes writes. A read-only mount takes none whatever
 * the bits say, and the bits there are often 1777 or 0777 by construction: a Kubernetes ConfigMap or Secret
 * volume (a read-only tmpfs whose top directory is 1777, files at the chart's defaultMode), a `docker -v …:ro`
 * bind of a host directory. access(2) answers EROFS for a write asked on such a mount, even to root.
 */
export function writableByOthers(path: string, mode: number): boolean {
  if (!(mode & 0o002)) return false
  try {
    accessSync(path, constants.W_OK)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EROFS') return false
  }
  return true
}

/**
 * Where every user could replace the file or directory at `path` by renaming one of their own over it, whatever
 * its own mode: a directory above it that is o+w without the sticky bit (which keeps others from renaming over
 * an entry they do not own, as in /tmp), on a mount that takes writes. Every directory on the way counts, as
 * sshd's StrictModes walks the path: those above `path` as written (where a link may sit) and those above
 * the file it names (`real`). Undefined when nobody else can.
 */
export function replaceableByOthers(path: string): { real: string; dir: string; mode: number } | undefined {
  const real = realpathSync(path)
  for (const start of new Set([dirname(resolve(path)), dirname(real)])) {
    for (let dir = start; ; dir = dirname(dir)) {
      // The path as written may name, through `..` after a link, directories that are not on the way to it.
      const mode = statSync(dir, { throwIfNoEntry: false })?.mode
      if (mode === undefined) break
      if (!(mode & 0o1000) && writableByOthers(dir, mode)) return { real, dir, mode }
      if (dirname(dir) === dir) break
    }
  }
  return undefined
}
