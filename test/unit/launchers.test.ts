import { readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import { describe, expect, it } from 'vitest'

// The broker's Node options (heap sizing) live on the first line of its bin, so every launcher must
// execute the bin itself: `node <bin>` would skip that line.
const ROOT = join(import.meta.dirname, '../..')
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8')

describe('launchers', () => {
  it('the bin carries the heap options and the malloc arena limit on its first line, through env -S', () => {
    const line = read('bin/condor-token-broker.js').split('\n')[0]!.match(/^#!\/usr\/bin\/env -S ((?:[A-Z_]+=\S+ )*)node((?: --[a-z-]+(?:=\S+)?)*)$/)
    expect(line, 'first line').not.toBeNull()
    expect(line![1]!.trim().split(' ')).toEqual(['MALLOC_ARENA_MAX=2'])
    expect(line![2]!.trim().split(' ')).toEqual(expect.arrayContaining([expect.stringMatching(/^--max-semi-space-size=\d+$/), '--no-allocation-site-pretenuring']))
  })

  it('npm start, the container and the systemd unit execute the bin, not node with it', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; bin: Record<string, string> }
    expect(pkg.bin['condor-token-broker']).toBe('bin/condor-token-broker.js')
    expect(pkg.scripts.start).toBe('exec ./bin/condor-token-broker.js serve')
    expect(read('Dockerfile')).toMatch(/^ENTRYPOINT \["\/app\/bin\/condor-token-broker\.js"\]$/m)
    expect(read('packaging/condor-token-broker.service')).toMatch(/^ExecStart=\/usr\/bin\/condor-token-broker serve /m)
  })
})

// systemd.exec(5): "Except in case of ConfigurationDirectory=, the innermost specified directories will be
// owned by the user and group specified in User= and Group=", and "The innermost specified directories will
// have their access mode adjusted to" the *DirectoryMode= at every start. /etc/condor-token-broker thus stays
// owned by whoever made it, with the unit's mode: without the search bit for others, the service user reaches
// broker.yaml only as the directory's group, so the README's install steps must create it with group ctb.
describe('the systemd unit and the README install steps', () => {
  it('the service user can reach its configuration directory', () => {
    const unit = read('packaging/condor-token-broker.service')
    const user = /^User=(\S+)$/m.exec(unit)![1]!
    const dir = /^ConfigurationDirectory=(\S+)$/m.exec(unit)?.[1]
    const mode = /^ConfigurationDirectoryMode=([0-7]+)$/m.exec(unit)?.[1]
    expect(dir).toBe('condor-token-broker')
    if (mode !== undefined && (parseInt(mode, 8) & 0o001) === 0) {
      const install = new RegExp(`^install -d -o root -g ${user} -m 0?${mode.replace(/^0/, '')} /etc/${dir}(\\s|$)`, 'm')
      expect(read('README.md')).toMatch(install)
    }
  })

  // The docs put secrets in the environment (the PostgreSQL password in CTB_AUDIT_POSTGRES_DSN or PGPASSWORD,
  // the credentials key in credentials.key_env). An Environment= line, in the unit or a `systemctl edit`
  // drop-in, is a unit property any local user can read (`systemctl show -p Environment`); systemd.exec(5)
  // reads EnvironmentFile= as root before it drops privileges and shows only the file's name. The unit
  // must give such values that place (optional: "-"), and the README must say to use it, mode 0600.
  it('gives secret environment variables a file only root reads, never an Environment= line', () => {
    const unit = read('packaging/condor-token-broker.service')
    const file = /^EnvironmentFile=-(\/etc\/condor-token-broker\/\S+)$/m.exec(unit)?.[1]
    expect(file, 'EnvironmentFile=-/etc/condor-token-broker/...').toBeDefined()
    expect(unit).not.toMatch(/^Environment=/m)
    expect(read('README.md')).toMatch(new RegExp(`install -m 0?600 -o root -g root [^\n]* ${file!.replace(/[.]/g, '\\.')}(\\s|$)`))
  })

  it('the unit names configuration fields that exist', () => {
    // A path such as docs/audit.md is not a field.
    const example = read('config/broker.example.yaml')
    for (const [, section, field] of read('packaging/condor-token-broker.service').matchAll(/(?<![/\w])(audit)\.([a-z_]+)\b(?!\.)/g)) {
      expect(example, `${section}.${field}`).toMatch(new RegExp(`^${section}:[\\s\\S]*?^  ${field}:`, 'm'))
    }
  })
})

// The example policies grant roles to example group and client names (/ctb-admins, /htc/users,
// ctb-monitoring). A container whose mounted broker.yaml leaves policy_dir unset must refuse to start
// ("cannot read policy directory"), not serve the examples: the default policy_dir, resolved against
// the image's working directory, must hold nothing the image copied there.
describe('the container image', () => {
  it('puts no policy directory where a config without policy_dir would look', () => {
    const dockerfile = read('Dockerfile')
    const finalStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '))
    const workdir = /^WORKDIR (\S+)$/m.exec(finalStage)![1]!
    // docs/policies.md: policy_dir defaults to policies/ (relative to the working directory).
    const defaultPolicies = posix.join(workdir, 'policies')
    const copied = [...finalStage.matchAll(/^COPY (?:--\S+ )*.*\s(\S+)$/gm)].map((m) => posix.resolve(workdir, m[1]!).replace(/\/$/, ''))
    expect(copied.length).toBeGreaterThan(3)
    for (const to of copied) expect(to === defaultPolicies || to.startsWith(`${defaultPolicies}/`), `COPY to ${to}`).toBe(false)
  })
})

// docs/architecture.md: a SIGTERM ends serve within shutdown_grace_seconds (default 10) + 10 s for the
// store, whatever PostgreSQL does. A supervisor that kills sooner cuts the drain and the clean stop's
// anchor: Docker's own default is 10 s (docker stop -t), so the container's run line must give more.
describe('stop timeouts cover the drain', () => {
  const drainBound = 10 + 10
  it('the systemd unit waits at least the drain bound before SIGKILL', () => {
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(read('packaging/condor-token-broker.service'))![1])
    expect(stop).toBeGreaterThan(drainBound)
  })

  it('the README\'s docker run line gives the container more than Docker\'s 10 s', () => {
    const run = /^docker run -d .*$/m.exec(read('README.md'))![0]
    const timeout = /--stop-timeout[ =](\d+)/.exec(run)
    expect(timeout, run).not.toBeNull()
    expect(Number(timeout![1])).toBeGreaterThan(drainBound)
  })
})
