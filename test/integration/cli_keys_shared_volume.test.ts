import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../support/tmp.ts'

const BIN = join(import.meta.dirname, '../../bin/condor-token-broker.js')
const NOBODY = 65534

function run(dataDir: string, args: readonly string[], as: number) {
  return spawnSync(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' },
    encoding: 'utf8', timeout: 30_000, uid: as, gid: as,
  })
}

// A Kubernetes volume with fsGroup (or an OpenShift one) is a directory root owns, group-writable (setgid)
// for the pod's group; the broker runs as its own non-root user in that group. Run as that user (kubectl
// exec), keys init makes keys/ its own, as serve would at its first start: nothing it writes is unreadable
// to the broker, so the root-owned volume must not refuse it.
describe('keys commands on a root-owned volume shared by group', () => {
  it('keys init and then keys rotate, as the service\'s non-root user', () => {
    // Running as another user takes root, which the suite runs as (see pilot_script.test.ts).
    expect(process.getuid?.()).toBe(0)
    const top = tempDir()
    chmodSync(top, 0o755)
    const data = join(top, 'data')
    mkdirSync(data)
    chownSync(data, 0, NOBODY)
    chmodSync(data, 0o2770)

    const init = run(data, ['keys', 'init'], NOBODY)
    expect({ status: init.status, stderr: init.stderr }).toEqual({ status: 0, stderr: '' })
    expect(statSync(join(data, 'keys')).uid).toBe(NOBODY)
    const rotate = run(data, ['keys', 'rotate'], NOBODY)
    expect(rotate.stderr).not.toContain('belongs to uid')
    expect(rotate.status).toBe(0)
  })
})
