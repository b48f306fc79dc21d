// readSecretFile refuses a key or token file group or other may read or write (HTCondor ignores such files,
// docs/htcondor-tokens.md §1.1, §1.5). The file it checks must be the file it reads: a path swapped between the
// check and the read handed back another file's bytes, its mode never looked at.
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { readSecretFile } from '../../src/lib/secure_file.ts'
import { tempDir } from '../support/tmp.ts'

function secretFile(dir: string, name: string, text: string, mode: number): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  chmodSync(path, mode)
  return path
}

describe('readSecretFile', () => {
  it('reads a 0600 file', () => {
    const path = secretFile(tempDir(), 'key', 'good secret\n', 0o600)
    expect(readSecretFile(path).toString('utf8')).toBe('good secret\n')
  })

  it('refuses a file group or other may read, naming its mode', () => {
    const path = secretFile(tempDir(), 'key', 'lax secret\n', 0o644)
    expect(() => readSecretFile(path)).toThrow(expect.objectContaining({ code: 'EPERMS', message: expect.stringContaining('has mode 0644') }))
  })

  it('reads the file whose mode it checked when the path is swapped before the read', () => {
    const dir = tempDir()
    const path = secretFile(dir, 'key', 'checked secret\n', 0o600)
    const other = secretFile(dir, 'planted', 'planted secret\n', 0o644)
    // rename(2) over the path after the check: the path now names a world-readable file the check never saw.
    const read = readSecretFile(path, { beforeRead: () => renameSync(other, path) })
    expect(read.toString('utf8')).toBe('checked secret\n')
  })

  it('follows a symlink (certbot live/, Kubernetes secret mounts) and checks the file it names', () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'data'))
    const good = secretFile(join(dir, 'data'), 'key', 'linked secret\n', 0o600)
    symlinkSync(good, join(dir, 'key'))
    expect(readSecretFile(join(dir, 'key')).toString('utf8')).toBe('linked secret\n')
    const lax = secretFile(join(dir, 'data'), 'lax', 'lax secret\n', 0o640)
    symlinkSync(lax, join(dir, 'laxlink'))
    expect(() => readSecretFile(join(dir, 'laxlink'))).toThrow(expect.objectContaining({ code: 'EPERMS', message: expect.stringContaining('has mode 0640') }))
  })

  it('refuses a directory and a FIFO without waiting for a writer', () => {
    const dir = tempDir()
    expect(() => readSecretFile(dir)).toThrow(expect.objectContaining({ code: 'ENOTFILE' }))
    const fifo = join(dir, 'fifo')
    execFileSync('mkfifo', ['-m', '600', fifo])
    expect(() => readSecretFile(fifo)).toThrow(expect.objectContaining({ code: 'ENOTFILE' }))
  })

  it('says which file is missing in one line', () => {
    const path = join(tempDir(), 'absent')
    expect(() => readSecretFile(path)).toThrow(expect.objectContaining({ message: `cannot read ${path}: ENOENT` }))
  })
})
