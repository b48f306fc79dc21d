import { chownSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

/** Chowns `dir` and everything under it, as `install -o ctb` and systemd's StateDirectory leave it. */
function chownTree(dir: string, uid: number): void {
  chownSync(dir, uid, uid)
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) chownSync(join(dir, f), uid, uid)
}

const ENV = { CTB_TRUST_DOMAIN: 'pool.example.org' }

/**
 * The service's data_dir with its keys and audit log, owned by another user: nobody (65534), as the state
 * directory is ctb's. Chowning takes root, which the suite runs as (see pilot_script.test.ts); a non-root
 * caller in a root-owned data_dir is let through on purpose (a volume shared with the broker's group).
 */
async function foreignDataDir(): Promise<{ dir: string; owner: number; initialised: boolean }> {
  expect(process.getuid?.()).toBe(0)
  const dir = join(tempDir(), 'data')
  const env = { ...ENV, CTB_DATA_DIR: dir }
  expect((await cli(['keys', 'init'], env)).code).toBe(0)
  expect((await cli(['revoke', '--site', 'cloud-a', '--reason', 'made before the chown'], env)).code).toBe(0)
  chownTree(dir, 65534)
  return { dir, owner: 65534, initialised: true }
}

// `sudo condor-token-broker revoke …` (root, not `sudo -u ctb`) writes the audit database, its -wal and -shm
// files, the pool CA or the audit anchor as root's, 0600, in the service's state directory; the broker, as
// ctb, then cannot read or write them. Every command that writes there refuses in one line, as the keys
// commands do, before it changes anything.
describe('writing commands run by another user than the data_dir\'s owner', () => {
  it.each([
    ['revoke', ['revoke', '--site', 'cloud-a', '--reason', 'compromised']],
    ['revoke lift', ['revoke', 'lift', '1']],
    ['audit prune', ['audit', 'prune', '--days', '400']],
    ['ca init', ['ca', 'init']],
    ['credential revoke', ['credential', 'revoke', 'alice', 'iam']],
    ['token create', ['token', 'create', '--identity', 'alice@pool.example.org', '--authz', 'READ']],
  ])('%s refuses, names the owner and changes nothing', async (command, args) => {
    const { dir, owner, initialised } = await foreignDataDir()
    const before = initialised ? readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort() : []
    const mtimes = before.map((f) => statSync(join(dir, f)).mtimeMs)
    const r = await cli(args, { ...ENV, CTB_DATA_DIR: dir })
    expect(r.err).toBe(`condor-token-broker: the key directory ${join(dir, 'keys')} belongs to uid ${owner}, not to this user (uid ${process.getuid!()}): run "${command}" as its owner (e.g. sudo -u ctb), or the broker cannot read what it writes`)
    expect(r.code).toBe(1)
    expect(r.out).toBe('')
    if (initialised) {
      expect(readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()).toEqual(before)
      for (const [i, f] of before.entries()) {
        expect(statSync(join(dir, f)).uid).toBe(owner)
        expect(statSync(join(dir, f)).mtimeMs).toBe(mtimes[i])
      }
    }
  })

  it('lets a command that only reads run (revoke list)', async () => {
    const { dir, initialised } = await foreignDataDir()
    if (!initialised) return
    const r = await cli(['revoke', 'list'], { ...ENV, CTB_DATA_DIR: dir })
    expect(r.err).not.toMatch(/belongs to uid/)
    expect(r.code).toBe(0)
  })
})
