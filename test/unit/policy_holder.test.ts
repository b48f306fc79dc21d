import { mkdirSync, renameSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { decide } from '../../src/policy/decide.ts'
import { PolicyHolder, type PolicyReloadEvent } from '../../src/policy/policy_holder.ts'
import { OperatorError } from '../../src/errors.ts'
import { tempDir } from '../support/tmp.ts'

const CTX: PolicyContext = {
  trustDomain: 'pool.example.org',
  uidDomain: 'pool.example.org',
  vars: { IAM_ISSUER: 'https://iam.example.org/' },
  scitokenProfile: 'wlcg',
  maxLifetime: {},
}

function policyYaml(authz: string): string {
  return `version: 1
rules:
  - id: mon
    match: { issuer: "\${IAM_ISSUER}", client_id: [mon] }
    grants:
      - role: monitoring
        identity: monitor@{trust_domain}
        token_kinds: [idtoken]
        authz: ${authz}
        lifetime: { default: 1h, max: 1d }
`
}

const request = {
  subject: { iss: 'https://iam.example.org/', sub: 's', client_id: 'mon', groups: [], scopes: [], exp: 0, claims: {} },
  role: 'monitoring',
  audience: [],
}

const holders: PolicyHolder[] = []
afterEach(() => { for (const h of holders.splice(0)) h.close() })

function setup(options: { watch?: boolean; sighup?: boolean; debounceMs?: number } = {}) {
  const dir = tempDir()
  const f = join(dir, 'p.yaml')
  writeFileSync(f, policyYaml('[READ]'))
  const holder = new PolicyHolder({ dir, context: CTX, watch: false, sighup: false, ...options })
  holders.push(holder)
  const events: PolicyReloadEvent[] = []
  holder.onReload((e) => events.push(e))
  return { dir, f, holder, events }
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  for (let waited = 0; !cond(); waited += 20) {
    if (waited > ms) throw new Error('timed out waiting for reload')
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('PolicyHolder', () => {
  it('fails fast at start-up on an invalid policy', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'p.yaml'), policyYaml('[]'))
    expect(() => new PolicyHolder({ dir, context: CTX })).toThrow(OperatorError)
    expect(() => new PolicyHolder({ dir, context: CTX })).toThrow(/p\.yaml:9:16: .*needs at least one authz level/)
  })

  it('keeps the old policy when the new file is invalid, and reports why', () => {
    const { f, holder, events } = setup()
    const before = holder.current
    writeFileSync(f, policyYaml('[READ, BOGUS]'))
    const e = holder.reload('manual')
    expect(e).toMatchObject({ ok: false, trigger: 'manual', previousDigest: before.digest })
    expect(e.ok === false && e.errors.join('\n')).toMatch(/p\.yaml:9:23: .*unknown HTCondor authorization level "BOGUS"/)
    expect(holder.current).toBe(before)
    expect(decide(holder.current, request)).toMatchObject({ allow: true, scopes: ['READ'] })
    expect(events).toEqual([e])
  })

  it('swaps in a valid new policy and tells listeners; unchanged content is silent', () => {
    const { f, holder, events } = setup()
    const before = holder.current
    expect(holder.reload().ok).toBe(true)
    expect(events).toEqual([])
    writeFileSync(f, policyYaml('[READ, ADVERTISE_MASTER]'))
    const e = holder.reload('sighup')
    expect(e).toMatchObject({ ok: true, trigger: 'sighup', previousDigest: before.digest, rules: 1 })
    expect(holder.current).not.toBe(before)
    expect(decide(holder.current, request)).toMatchObject({ allow: true, scopes: ['READ', 'ADVERTISE_MASTER'] })
    expect(events).toHaveLength(1)
  })

  it('a throwing listener does not undo the swap or starve other listeners', () => {
    const { f, holder, events } = setup()
    holder.onReload(() => { throw new Error('audit store down') })
    const seen: boolean[] = []
    holder.onReload((e) => seen.push(e.ok))
    writeFileSync(f, policyYaml('[READ, ADVERTISE_MASTER]'))
    holder.reload()
    expect(events).toHaveLength(1)
    expect(seen).toEqual([true])
    expect(decide(holder.current, request)).toMatchObject({ scopes: ['READ', 'ADVERTISE_MASTER'] })
  })

  it('reloads on SIGHUP', () => {
    const { f, holder, events } = setup({ sighup: true })
    holder.start()
    writeFileSync(f, policyYaml('[READ, ADVERTISE_MASTER]'))
    process.emit('SIGHUP', 'SIGHUP')
    expect(events).toMatchObject([{ ok: true, trigger: 'sighup' }])
    holder.close()
    writeFileSync(f, policyYaml('[READ]'))
    process.emit('SIGHUP', 'SIGHUP')
    expect(events).toHaveLength(1)
  })

  it('reloads once after a burst of file changes (debounced watch), and refuses a broken save', async () => {
    const { f, holder, events } = setup({ watch: true, debounceMs: 50 })
    holder.start()
    for (let i = 0; i < 5; i++) writeFileSync(f, policyYaml(i % 2 ? '[READ]' : '[READ, ADVERTISE_MASTER]'))
    await waitFor(() => events.length > 0)
    await new Promise((r) => setTimeout(r, 150))
    expect(events).toMatchObject([{ ok: true, trigger: 'watch' }])
    const good = holder.current
    writeFileSync(f, 'version: 1\nrules: [ {')
    await waitFor(() => events.length > 1)
    expect(events[1]).toMatchObject({ ok: false, trigger: 'watch' })
    expect(holder.current).toBe(good)
  })
})

// How policy files are really changed in place: the reload must follow each (docs/policies.md).
describe('policy reload as deployments change files', () => {
  /** What the kubelet writes for a ConfigMap volume: p.yaml -> ..data/p.yaml, ..data -> a timestamped directory. */
  function configMapVersion(dir: string, version: string, authz: string): void {
    mkdirSync(join(dir, version))
    writeFileSync(join(dir, version, 'p.yaml'), policyYaml(authz))
    symlinkSync(version, join(dir, '..data_tmp'))
    // The update is one rename of the ..data link; the p.yaml link itself never changes.
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
  }

  it('loads a Kubernetes ConfigMap volume and follows its atomic ..data swap', async () => {
    const dir = tempDir()
    configMapVersion(dir, '..2026_12_01_12_00_00.000000001', '[READ]')
    symlinkSync('..data/p.yaml', join(dir, 'p.yaml'))
    const holder = new PolicyHolder({ dir, context: CTX, watch: true, sighup: false, debounceMs: 50 })
    holders.push(holder)
    const events: PolicyReloadEvent[] = []
    holder.onReload((e) => events.push(e))
    holder.start()
    expect(decide(holder.current, request)).toMatchObject({ allow: true, scopes: ['READ'] })
    configMapVersion(dir, '..2026_12_01_12_05_00.000000002', '[READ, ADVERTISE_MASTER]')
    await waitFor(() => events.length > 0)
    expect(events[0]).toMatchObject({ ok: true, trigger: 'watch', files: [join(dir, 'p.yaml')] })
    expect(decide(holder.current, request)).toMatchObject({ allow: true, scopes: ['READ', 'ADVERTISE_MASTER'] })
  })

  it('follows an editor that writes a new file and renames it over the old one', async () => {
    const { dir, f, holder, events } = setup({ watch: true, debounceMs: 50 })
    holder.start()
    writeFileSync(join(dir, '.p.yaml.swp'), policyYaml('[READ, ADVERTISE_MASTER]'))
    renameSync(join(dir, '.p.yaml.swp'), f)
    await waitFor(() => events.length > 0)
    expect(events[0]).toMatchObject({ ok: true, trigger: 'watch' })
    expect(decide(holder.current, request)).toMatchObject({ allow: true, scopes: ['READ', 'ADVERTISE_MASTER'] })
  })

  it('follows an editor that truncates the file and writes it again in place', async () => {
    const { f, holder, events } = setup({ watch: true, debounceMs: 50 })
    holder.start()
    truncateSync(f, 0)
    writeFileSync(f, policyYaml('[READ, ADVERTISE_MASTER]'))
    await waitFor(() => events.length > 0)
    await new Promise((r) => setTimeout(r, 150))
    expect(decide(holder.current, request)).toMatchObject({ allow: true, scopes: ['READ', 'ADVERTISE_MASTER'] })
  })
})
