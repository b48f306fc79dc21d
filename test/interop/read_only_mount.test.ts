import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireTool } from '../support/peers.ts'
import { tempDir } from '../support/tmp.ts'

// A Kubernetes ConfigMap volume is a tmpfs whose top directory is 1777 (or 0777), mounted read-only in the
// container. Its layout is kubelet's atomic writer's (pkg/volume/util/atomic_writer.go): the data sits in a
// 0755 directory named `..` plus a UTC time (`..2006_01_02_15_04_05.` and a random suffix), `<dir>/..data`
// links to that directory's name, and each visible file is a link `<dir>/<name> -> ..data/<name>`, mode
// `defaultMode` (0644 unless the chart says 0666 or 0777). Nobody in the pod can write any of it, whatever the
// bits say. A read-only mount alone proves nothing: ProtectSystem=strict or a `docker -v …:ro` bind is
// read-only to the broker only, while the host directory stays as writable as its bits say; so only that
// layout on a read-only mount is exempt from the o+w refusal.
// The mounts are made in a user and mount namespace of their own (unshare -rm), so no privilege is needed.
const CHILD = join(import.meta.dirname, '../support/read_only_mount_child.ts')

function configMapVolume(options: { fileMode: string; readOnly: boolean; beside?: string }): { policy: unknown; config: string } {
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
}
volume "$1/policies" 00-base.yaml 'version: 1\\nrules: []\\n'
${options.beside ? `printf 'version: 1\\nrules: []\\n' > "$1/policies/10-beside.yaml"; chmod ${options.beside} "$1/policies/10-beside.yaml"` : ''}
volume "$1/config" broker.yaml 'listen:\\n  port: 8443\\n'
${options.readOnly ? 'mount -o remount,ro "$1/policies"; mount -o remount,ro "$1/config"' : ''}
exec "$2" "$3" "$1/policies" "$1/config/broker.yaml"`
  const out = execFileSync('unshare', ['-rm', 'sh', '-c', script, 'sh', mnt, process.execPath, CHILD], { encoding: 'utf8', timeout: 20_000 })
  return JSON.parse(out) as { policy: unknown; config: string }
}

/**
 * A host directory of mode 0777 with a policy file and broker.yaml in it, read-only where the broker reads it
 * but writable on the host: `bind` is `docker -v dir:/etc/ctb:ro` (the directory itself bound), `parent` is
 * ProtectSystem=strict (everything above made read-only, the directory no mount of its own). `forged` lays the
 * files out as kubelet would, `..data` and all, which anyone who may write the host directory can do.
 */
function readOnlyOpenDir(options: { bound: 'bind' | 'parent'; forged: boolean; owner?: number }): { policy: unknown; config: string } {
  requireTool('unshare', 'util-linux')
  const mnt = tempDir()
  // The host side is laid out outside the namespace, where a file can be given to a user of the host.
  const host = `set -e
put() {
  if ${options.forged ? 'true' : 'false'}; then
    mkdir -m 0755 "$1/..2026_12_02_00_00_00.000000001"
    printf "$3" > "$1/..2026_12_02_00_00_00.000000001/$2"
    chmod 0666 "$1/..2026_12_02_00_00_00.000000001/$2"
    ln -s "..2026_12_02_00_00_00.000000001" "$1/..data"
    ln -s "..data/$2" "$1/$2"
  else
    printf "$3" > "$1/$2"
    chmod 0666 "$1/$2"
  fi
}
mkdir -p "$1/host/policies" "$1/host/config"
chmod 0777 "$1/host/policies" "$1/host/config"
put "$1/host/policies" 00-base.yaml 'version: 1\\nrules: []\\n'
put "$1/host/config" broker.yaml 'listen:\\n  port: 8443\\n'
${options.owner === undefined ? '' : `chown -R -h ${options.owner} "$1/host/policies" "$1/host/config"`}
`
  execFileSync('sh', ['-c', host, 'sh', mnt], { timeout: 20_000 })
  const script = `set -e
mkdir "$1/ro"
${options.bound === 'bind'
    ? `for v in policies config; do
  mkdir "$1/ro/$v"
  mount --bind "$1/host/$v" "$1/ro/$v"
  mount -o remount,bind,ro "$1/ro/$v"
done`
    : `mount --bind "$1/host" "$1/ro"
mount -o remount,bind,ro "$1/ro"`}
exec "$2" "$3" "$1/ro/policies" "$1/ro/config/broker.yaml"`
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

  it.each(['bind', 'parent'] as const)('refuses a 0777 directory and 0666 files made read-only (%s) without the ..data layout', (bound) => {
    const got = readOnlyOpenDir({ bound, forged: false })
    expect(got.policy).toEqual([expect.stringMatching(/policy directory writable by every user \(mode 0777\)/)])
    expect(got.config).toMatch(/is writable by every user \(mode 0666\)/)
  })

  it('refuses a ..data layout forged in a 0777 directory that is no mount of its own (ProtectSystem=strict)', () => {
    const got = readOnlyOpenDir({ bound: 'parent', forged: true })
    expect(got.policy).toEqual([expect.stringMatching(/policy directory writable by every user \(mode 0777\)/)])
    expect(got.config).toMatch(/is writable by every user \(mode 0666\)/)
  })

  it('refuses a ..data layout forged by a host user in a 0777 directory bound read-only (docker -v dir:ro)', () => {
    // The bound directory is a mount of its own, as a volume is; what tells them apart is who laid out ..data:
    // kubelet (root) or a user of the host, here uid 1001 (shown in the namespace as the overflow uid).
    expect(process.getuid?.()).toBe(0)
    const got = readOnlyOpenDir({ bound: 'bind', forged: true, owner: 1001 })
    expect(got.policy).toEqual([expect.stringMatching(/policy directory writable by every user \(mode 0777\)/)])
    expect(got.config).toMatch(/is writable by every user \(mode 0666\)/)
  })

  it('refuses a file beside ..data in a ConfigMap volume, not reached through it', () => {
    expect(configMapVolume({ fileMode: '0644', readOnly: true, beside: '0666' })).toEqual({
      policy: [expect.stringMatching(/10-beside\.yaml: writable by every user \(mode 0666\)/)],
      config: 'ok',
    })
  })
})
