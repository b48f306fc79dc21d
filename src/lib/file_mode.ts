import { accessSync, constants, lstatSync, readlinkSync, realpathSync, statSync } from 'node:fs'
import { dirname, isAbsolute, join } from 'node:path'

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
 * its own mode: a directory on the way to it that is o+w without the sticky bit (which keeps others from renaming
 * over an entry they do not own, as in /tmp), on a mount that takes writes. Every directory the path is looked
 * up through counts, as sshd's StrictModes walks the path, and so does that of every link on the way (a link
 * to a link in /srv/shared is as open as a file there). Undefined when nobody else can.
 */
export function replaceableByOthers(path: string): { real: string; dir: string; mode: number } | undefined {
  // native: realpath(3), which takes `..` after a link from where the link led; the JS one resolves `..` in the text first.
  const real = realpathSync.native(path)
  for (const dir of directoriesOnTheWay(path)) {
    const mode = statSync(dir).mode
    if (!(mode & 0o1000) && writableByOthers(dir, mode)) return { real, dir, mode }
  }
  return undefined
}

/** Links a path may go through before the lookup is given up, as the kernel's ELOOP limit (40). */
const MAX_LINKS = 40

/**
 * Every directory in which the kernel looks up an entry on its way to `path`, links followed one by one: those
 * above the path as written, those holding each link and those above the file at the end. A `..` after a link
 * goes up from where the link led, as in the kernel, not from where the path as written was.
 */
function directoriesOnTheWay(path: string): Set<string> {
  const parts = (p: string) => p.split('/').filter((c) => c !== '' && c !== '.')
  const dirs = new Set<string>()
  const pending = parts(isAbsolute(path) ? path : `${process.cwd()}/${path}`)
  let at = '/'
  for (let links = 0; pending.length > 0;) {
    const name = pending.shift()!
    if (name === '..') {
      at = dirname(at)
      continue
    }
    dirs.add(at)
    const next = join(at, name)
    if (!lstatSync(next).isSymbolicLink()) {
      at = next
      continue
    }
    if (++links > MAX_LINKS) throw Object.assign(new Error(`too many links: ${path}`), { code: 'ELOOP' })
    const target = readlinkSync(next)
    if (isAbsolute(target)) at = '/'
    pending.unshift(...parts(target))
  }
  return dirs
}

/** How a directory `replaceableByOthers` found stands to the file: above it, or holding a link on the way to it. */
export function wayOf(found: { real: string; dir: string }): 'under' | 'by way of' {
  return found.real.startsWith(found.dir === '/' ? '/' : `${found.dir}/`) ? 'under' : 'by way of'
}
