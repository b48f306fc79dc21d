// A write that fails for want of space is the environment's problem, not a bug: the CLI says which file
// it could not write, on one line, and exits 1, as test/unit/cli_filesystem_errors.test.ts asks of other
// file-system failures (never "internal error", exit 70). A full disk cannot be made portably, so
// node:fs's writeSync fails as Node's own does on ENOSPC: a code and a syscall, and no path (a write
// names a descriptor, not a file).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { tempDir } from '../support/tmp.ts'

const disk = vi.hoisted(() => ({ full: false }))
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>()
  const writeSync = ((...a: Parameters<typeof fs.writeSync>) => {
    if (disk.full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { errno: -28, code: 'ENOSPC', syscall: 'write' })
    return (fs.writeSync as (...b: unknown[]) => number)(...a)
  }) as typeof fs.writeSync
  return { ...fs, default: { ...fs, writeSync }, writeSync }
})

const { cli } = await import('../support/cli.ts')

describe('a full disk at the CLI', () => {
  it('credmon names the pid file it cannot write and exits 1', async () => {
    const dir = tempDir()
    const token = join(dir, 'credd.token')
    writeFileSync(token, 'eyJ.x.y\n', { mode: 0o600 })
    disk.full = true
    try {
      const r = await cli(['credmon', '--broker', 'https://broker.example.org', '--providers', 'cms', '--cred-dir', dir, '--token-file', token], {})
      expect(r.err).toBe(`condor-token-broker: cannot write ${join(dir, 'pid')}: no space left on device (ENOSPC)`)
      expect(r.code).toBe(1)
    } finally {
      disk.full = false
    }
  })
})
