import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { OperatorError } from '../errors.ts'

/**
 * Reads a secret file, refusing it when group or other may read or write it. HTCondor silently ignores
 * such key and token files (docs/htcondor-tokens.md §1.1, §1.5); we say so instead of failing later.
 */
export function readSecretFile(path: string): Buffer {
  let st
  try {
    st = statSync(path)
  } catch (err) {
    throw new OperatorError('ENOENT', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  if (!st.isFile()) throw new OperatorError('ENOTFILE', `${path} is not a regular file`)
  const mode = st.mode & 0o777
  if (mode & 0o077) {
    throw new OperatorError(
      'EPERMS',
      `${path} has mode ${mode.toString(8).padStart(4, '0')}; key and token files must not be accessible to group or other (chmod 600 ${path})`,
    )
  }
  return readFileSync(path)
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
 * Replaces `path` via a dot-prefixed temp file in the same directory (fsynced, then renamed), so a
 * reader sees the old file or the new one, never part of one. The directory must exist. HTCondor skips
 * dot-files when it reads key, token and config directories (docs/htcondor-tokens.md §1.1, §1.5).
 */
export function replaceFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  const fd = openSync(tmp, 'wx', mode)
  try {
    writeAll(fd, data)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, path)
}

function writeAll(fd: number, data: string | Uint8Array): void {
  const buf = typeof data === 'string' ? Buffer.from(data) : data
  let off = 0
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off)
}
