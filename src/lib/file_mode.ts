import { accessSync, constants, realpathSync, statSync } from 'node:fs'
import { dirname } from 'node:path'

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
 * Where every user could replace the file `path` names (links followed) by renaming one of their own over it,
 * whatever its own mode: its directory is o+w without the sticky bit (which keeps others from renaming over a
 * file they do not own, as in /tmp), on a mount that takes writes. Undefined when they cannot.
 */
export function replaceableByOthers(path: string): { file: string; dir: string; mode: number } | undefined {
  const file = realpathSync(path)
  const dir = dirname(file)
  const mode = statSync(dir).mode
  if (mode & 0o1000) return undefined
  return writableByOthers(dir, mode) ? { file, dir, mode } : undefined
}
