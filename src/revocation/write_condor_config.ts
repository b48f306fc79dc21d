import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { basename, dirname, join } from 'node:path'

/**
 * Replaces a HTCondor config snippet atomically (temp file + rename in the same directory), mode 0644 so
 * the daemons can read it. The temp name starts with '.', which LOCAL_CONFIG_DIR_EXCLUDE_REGEXP skips by
 * default (htcondor-tokens.md §1.1), so a daemon reconfiguring mid-write never reads half a file.
 */
export function writeCondorConfigAtomic(path: string, text: string): void {
  const dir = dirname(path)
  mkdirSync(dir, { recursive: true })
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  const fd = openSync(tmp, 'wx', 0o644)
  try {
    const buf = Buffer.from(text)
    let off = 0
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, path)
}
