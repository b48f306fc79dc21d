import { chownSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

/** Chowns `dir` and everything under it, as `install -o ctb` and systemd's StateDirectory leave it. */
function chownTree(dir: string, uid: number): void {
  chownSync(dir, uid, uid)
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) chownSync(join(dir, f), uid, uid)
}

/**
 * A data_dir another user owns: as root, a broker's keys chowned to nobody (65534), as the service's state
 * directory is ctb's. Chowning takes root, which the suite runs as (see pilot_script.test.ts).
 */
async function foreignDataDir(): Promise<{ dir: string; owner: number; initialised: boolean }> {
  expect(process.getuid?.()).toBe(0)
  const dir = join(tempDir(), 'data')
  expect((await cli(['keys', 'init'], { CTB_DATA_DIR: dir, CTB_TRUST_DOMAIN: 'pool.example.org' })).code).toBe(0)
  chownTree(dir, 65534)
  return { dir, owner: 65534, initialised: true }
}

// `sudo condor-token-broker keys rotate` (root, not `sudo -u ctb`, README "Installing") would write the new
// keyring and key root's, mode 0600, into the service's state directory: the running broker, as ctb, cannot
// read them (its keys stay as they were) and its next start fails on them. The writing key commands refuse
// to write into a data_dir another user owns, in one line, before they change anything.
describe('keys commands run by another user than the data_dir\'s owner', () => {
  it.each([['rotate'], ['init'], ['import']])('keys %s refuses, names the owner and changes nothing', async (sub) => {
    const { dir, owner, initialised } = await foreignDataDir()
    const before = initialised ? readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort() : []
    const args = sub === 'import' ? ['keys', 'import', '/dev/null', '--name', 'other'] : ['keys', sub]
    const r = await cli(args, { CTB_DATA_DIR: dir, CTB_TRUST_DOMAIN: 'pool.example.org' })
    // An initialised data_dir is judged by its keys/ (the broker's own), a bare one by itself.
    const named = initialised ? `the key directory ${join(dir, 'keys')}` : `data_dir ${dir}`
    expect(r.err).toBe(`condor-token-broker: ${named} belongs to uid ${owner}, not to this user (uid ${process.getuid!()}): run "keys ${sub}" as its owner (e.g. sudo -u ctb), or the broker cannot read what it writes`)
    expect(r.code).toBe(1)
    if (initialised) {
      expect(readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()).toEqual(before)
      for (const f of before) expect(statSync(join(dir, f)).uid).toBe(owner)
    }
  })
})

// Kubernetes' fsGroup and OpenShift leave a volume's top directory root's (group-writable for the pod), while
// the broker, as its own non-root user, makes keys/ at its first start and owns it. The owner that says who
// reads the keys is that of keys/, where they are written: `kubectl exec … keys rotate` runs as the broker's
// own user and must not be refused for the volume's owner. Mirrored here as root: keys/ root's, data_dir not.
describe('keys commands run by the owner of keys/ in a data_dir another user owns', () => {
  it.each([['rotate'], ['import']])('keys %s writes', async (sub) => {
    // Making a directory another user's takes root, which the suite runs as (see pilot_script.test.ts).
    expect(process.getuid?.()).toBe(0)
    const dir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    expect((await cli(['keys', 'init'], env)).code).toBe(0)
    chownSync(dir, 65534, 65534)
    const poolKey = join(dir, '..', 'POOL')
    writeFileSync(poolKey, Buffer.alloc(32, 7), { mode: 0o600 })
    const args = sub === 'import' ? ['keys', 'import', poolKey, '--name', 'OTHER'] : ['keys', sub]
    const r = await cli(args, env)
    expect(r.err).not.toContain('belongs to uid')
    expect(r.code).toBe(0)
  })
})
