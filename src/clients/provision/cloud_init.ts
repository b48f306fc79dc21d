import { stringify } from 'yaml'

/**
 * A bundle as cloud-init `user-data`: `#cloud-config` with `write_files` (base64 content, exact modes,
 * root-owned) and a `runcmd` that starts HTCondor once the files are in place (tokens before the master
 * starts: a daemon that starts with no token does not look again until reconfigured).
 */
export function cloudInit(files: ReadonlyArray<{ content: string; mode: number; installPath?: string }>): string {
  const write_files = files.filter((f) => f.installPath !== undefined).map((f) => ({
    path: f.installPath!,
    owner: 'root:root',
    permissions: `0${f.mode.toString(8)}`,
    encoding: 'b64',
    content: Buffer.from(f.content, 'utf8').toString('base64'),
  }))
  const runcmd = [
    ['chmod', '0700', '/etc/condor/tokens.d'],
    ['systemctl', 'enable', '--now', 'condor'],
  ]
  return `#cloud-config\n${stringify({ write_files, runcmd }, { lineWidth: 0 })}`
}
