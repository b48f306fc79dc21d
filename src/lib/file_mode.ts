import { accessSync, constants, lstatSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs'
import { basename, dirname, isAbsolute, join } from 'node:path'

/** A file's permission bits as chmod takes them (0644, 1777), for messages that say what to change. */
export function modeString(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0')
}

/**
 * Whether every user may change the file or directory at `path` (its mode, `mode`, read from the descriptor
 * the caller reads through): o+w, unless it is part of a Kubernetes ConfigMap, Secret or projected volume on a
 * read-only mount. Such a volume's top directory is 1777 (0777 on some kubelets) and its files are at the
 * chart's defaultMode (often 0666 or 0777), yet nobody in the pod can write it. A read-only mount alone is not
 * enough: ProtectSystem=strict makes /etc read-only to the service only, and a `docker -v …:ro` bind leaves
 * the host directory as open as its bits, so there the bits decide.
 */
export function writableByOthers(path: string, mode: number): boolean {
  if (!(mode & 0o002)) return false
  return !(inAtomicWriterVolume(path) && onReadOnlyMount(path))
}

/** access(2) answers EROFS for a write asked on a read-only mount, even to root. */
function onReadOnlyMount(path: string): boolean {
  try {
    accessSync(path, constants.W_OK)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EROFS'
  }
  return false
}

/** kubelet's data directory name: `..` and the UTC time as Go's `..2006_01_02_15_04_05.`, then a random suffix. */
const ATOMIC_WRITER_DATA_DIR = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$/

/**
 * Whether `path` is kubelet's atomic-writer layout (pkg/volume/util/atomic_writer.go): the volume's top
 * directory, holding `..data -> ..<time>`, or a file reached through that link (`<dir>/<name> -> ..data/<name>`
 * resolves into the `..<time>` directory `..data` names now). The top directory must be a mount of its own, as
 * every volume in a pod is, and `..data` and the directory it names must be root's, as kubelet makes them:
 * anyone who may write a host directory can lay out `..data` links in it, and that directory is read-only to
 * the broker without being a mount under ProtectSystem=strict, or is a mount of its own when bound in with
 * `docker -v dir:ro`. Anything else, read-only or not, is judged by its bits.
 */
function inAtomicWriterVolume(path: string): boolean {
  const dataLinkIn = (dir: string): string | undefined => {
    if (!mountPoints().has(dir)) return undefined
    try {
      const target = readlinkSync(join(dir, '..data'))
      if (!ATOMIC_WRITER_DATA_DIR.test(target)) return undefined
      // kubelet runs as root and an fsGroup changes only the group: a `..data` or data directory of any other
      // owner was laid out by a user of the host, in a directory of theirs bound in (`docker -v dir:ro` is a
      // mount of its own too), and is theirs to change under the broker.
      const data = lstatSync(join(dir, target))
      return lstatSync(join(dir, '..data')).uid === 0 && data.isDirectory() && data.uid === 0 ? target : undefined
    } catch {
      return undefined
    }
  }
  let real: string
  try {
    real = realpathSync.native(path)
  } catch {
    return false
  }
  if (statSync(real, { throwIfNoEntry: false })?.isDirectory() === true && dataLinkIn(real) !== undefined) return true
  for (let at = real; at !== '/'; at = dirname(at)) {
    if (ATOMIC_WRITER_DATA_DIR.test(basename(at)) && dataLinkIn(dirname(at)) === basename(at)) return true
  }
  return false
}

/**
 * The mount points this process sees (Linux's /proc/self/mountinfo, fifth field, with `\ooo` escapes for space,
 * tab, newline and backslash). None elsewhere, so nothing counts as a volume there.
 */
function mountPoints(): Set<string> {
  let text: string
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8')
  } catch {
    return new Set()
  }
  const unescape = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
  return new Set(text.split('\n').filter((line) => line !== '').map((line) => unescape(line.split(' ')[4] ?? '')))
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
