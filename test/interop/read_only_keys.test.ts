import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { KeyStore } from '../../src/keys/key_store.ts'
import { requireTool } from '../support/peers.ts'
import { tempDir } from '../support/tmp.ts'

// A key directory serve cannot write to (a Kubernetes Secret volume, a `docker -v …:ro` bind, a systemd
// layout without ReadWritePaths over it) that already holds its keys must still start: every keyring
// change takes keys/.keyring.lock (8fd0271), which cannot be made there, so a start that needs no change
// must take no lock, and one that would only prepare a next key loses that head start with a warning.
// The bind is made read-only in a user and mount namespace of its own (unshare -rm): no privilege needed.
const CHILD = join(import.meta.dirname, '../support/read_only_keys_child.ts')

function startOnReadOnlyKeys(dataDir: string): { signs?: string; nextJwtKeyError?: string | null; error?: string } {
  requireTool('unshare', 'util-linux')
  const keys = join(dataDir, 'keys')
  const script = 'set -e; mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; exec "$2" "$3" "$4"'
  const out = execFileSync('unshare', ['-rm', 'sh', '-c', script, 'sh', keys, process.execPath, CHILD, dataDir], { encoding: 'utf8', timeout: 20_000 })
  return JSON.parse(out) as { signs?: string; nextJwtKeyError?: string | null; error?: string }
}

describe('serve starting on a read-only key directory that has its keys', () => {
  const t = Math.floor(Date.now() / 1000) - 3600

  it('starts with no warning when the active and the next key are there, and takes no lock', () => {
    const dataDir = tempDir()
    const ks = new KeyStore(join(dataDir, 'keys'))
    ks.createCondorKey('broker1')
    const active = ks.ensureJwtKey('ES256', t).entry.kid
    ks.prepareNextJwtKey('ES256', t)
    expect(startOnReadOnlyKeys(dataDir)).toEqual({ signs: active, nextJwtKeyError: null })
    expect(readdirSync(join(dataDir, 'keys')).filter((n) => n.startsWith('.keyring.lock'))).toEqual([])
  })

  it('starts signing with its key when no next key is there, saying the directory is read-only', () => {
    const dataDir = tempDir()
    const ks = new KeyStore(join(dataDir, 'keys'))
    ks.createCondorKey('broker1')
    const active = ks.ensureJwtKey('ES256', t).entry.kid
    const r = startOnReadOnlyKeys(dataDir)
    expect(r.signs).toBe(active)
    expect(r.nextJwtKeyError).toMatch(/EROFS/)
    expect(existsSync(join(dataDir, 'keys', '.keyring.lock'))).toBe(false)
  })
})
