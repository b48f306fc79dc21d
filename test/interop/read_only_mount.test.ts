import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireTool } from '../support/peers.ts'
import { tempDir } from '../support/tmp.ts'

// A Kubernetes ConfigMap volume is a tmpfs whose top directory is 1777 (or 0777), mounted read-only in the
// container; its files are links through `..data` to a timestamped directory, mode `defaultMode` (0644 unless
// the chart says 0666 or 0777). Nobody can write any of it, whatever the mode bits say: the o+w refusal of
// policy files, policy_dir and broker.yaml is about who may change them, and on a read-only mount nobody may.
// The mount is made in a user and mount namespace of its own (unshare -rm), so no privilege is needed.
const CHILD = join(import.meta.dirname, '../support/read_only_mount_child.ts')

function configMapVolume(options: { fileMode: string; readOnly: boolean }): { policy: unknown; config: string } {
  requireTool('unshare', 'util-linux')
  const mnt = tempDir()
  // Two volumes, as a chart would mount them: the policies, and broker.yaml. Each file is a link through ..data.
  const script = `set -e
volume() {
  mkdir "$1"
  mount -t tmpfs -o mode=1777 ctb-configmap "$1"
  ts="$1/..2026_12_02_00_00_00.000000001"
  mkdir -m 0755 "$ts"
  printf "$3" > "$ts/$2"
  chmod ${options.fileMode} "$ts/$2"
  ln -s "..2026_12_02_00_00_00.000000001" "$1/..data"
  ln -s "..data/$2" "$1/$2"
  ${options.readOnly ? 'mount -o remount,ro "$1"' : ''}
}
volume "$1/policies" 00-base.yaml 'version: 1\\nrules: []\\n'
volume "$1/config" broker.yaml 'listen:\\n  port: 8443\\n'
exec "$2" "$3" "$1/policies" "$1/config/broker.yaml"`
  const out = execFileSync('unshare', ['-rm', 'sh', '-c', script, 'sh', mnt, process.execPath, CHILD], { encoding: 'utf8', timeout: 20_000 })
  return JSON.parse(out) as { policy: unknown; config: string }
}

describe('policies and broker.yaml on a read-only mount (a Kubernetes ConfigMap volume)', () => {
  it.each(['0644', '0666', '0777'])('reads them from a 1777 directory mounted read-only, files %s', (fileMode) => {
    expect(configMapVolume({ fileMode, readOnly: true })).toEqual({ policy: 'ok', config: 'ok' })
  })

  it('still refuses the same volume while it can be written', () => {
    const got = configMapVolume({ fileMode: '0666', readOnly: false })
    expect(got.policy).toEqual([expect.stringMatching(/policy directory writable by every user \(mode 1777\)/)])
    expect(got.config).toMatch(/is writable by every user \(mode 0666\)/)
  })
})
