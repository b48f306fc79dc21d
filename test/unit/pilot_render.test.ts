import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { renderPilotScript, type PilotScriptOptions } from '../../src/clients/pilot/render.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

const BASE: PilotScriptOptions = {
  site: 'CNAF-T1', partition: 'hpc_batch', account: 'htc.pool', walltime: '1-12:00:00', nodes: 1, cpus: 32, memMb: 64000,
  drainSeconds: 600, brokerUrl: 'https://broker.example.org:8443/', caFile: '/etc/pki/broker-ca.pem',
  enrolmentFile: '/home/pilot/stage/enrolment-77', logDir: '/home/pilot/logs/', collector: 'cm.example.org',
  trustDomain: 'pool.example.org', allowedOwners: ['alice', 'bob_2'],
}

/** The #SBATCH block sbatch reads: everything up to the first line that is not a comment. */
const headers = (script: string) => script.split('\n').filter((_, i, all) => all.slice(0, i + 1).every((x) => x.startsWith('#'))).join('\n')

describe('renderPilotScript', () => {
  it('writes the reviewed #SBATCH headers (golden file) and settings', () => {
    const script = renderPilotScript(BASE)
    const golden = fileURLToPath(new URL('../fixtures/pilot/sbatch_headers.golden', import.meta.url))
    if (process.env.CTB_UPDATE_GOLDEN === '1') writeFileSync(golden, `${headers(script)}\n`)
    expect(`${headers(script)}\n`).toBe(readFileSync(golden, 'utf8'))
    expect(script).toContain(`readonly BROKER_URL='https://broker.example.org:8443'\n`)
    expect(script).toContain(`readonly COLLECTOR='cm.example.org:9618'\n`)
    expect(script).toContain(`readonly GRACE=540\n`)
    expect(script).toContain(`readonly COMMAND=('condor_master' '-f')\n`)
    expect(script).toContain(`readonly ENROLMENT_TYPE='urn:condor-token-broker:token-type:pilot-enrolment'\n`)
    expect(script).not.toContain('{{')
  })

  it('renders a two-node job: its #SBATCH headers (golden file), the node count, and a script bash can parse', () => {
    const script = renderPilotScript({ ...BASE, nodes: 2 })
    const golden = fileURLToPath(new URL('../fixtures/pilot/sbatch_headers_2nodes.golden', import.meta.url))
    if (process.env.CTB_UPDATE_GOLDEN === '1') writeFileSync(golden, `${headers(script)}\n`)
    expect(`${headers(script)}\n`).toBe(readFileSync(golden, 'utf8'))
    expect(script).toContain('readonly NODES=2\n')
    const file = join(tempDir(), 'pilot.sbatch')
    writeFileSync(file, script)
    expect(() => execFileSync('bash', ['-n', file])).not.toThrow()
  })

  it('renders a script bash can parse, with no account line when none is given', () => {
    const { account: _omit, ...noAccount } = BASE
    const script = renderPilotScript(noAccount)
    expect(script).not.toContain('#SBATCH -A')
    const file = join(tempDir(), 'pilot.sbatch')
    writeFileSync(file, script)
    expect(() => execFileSync('bash', ['-n', file])).not.toThrow()
  })

  it.each<[string, Partial<PilotScriptOptions>, RegExp]>([
    ['a quote in the site', { site: "x'y" }, /^--site /],
    ['command substitution in the partition', { partition: '$(id)' }, /^--partition /],
    ['a newline in the account', { account: 'a\n#SBATCH --uid=0' }, /^--account /],
    ['a walltime sbatch would not read as we do', { walltime: '2h' }, /^--walltime /],
    ['a drain margin as long as the walltime', { walltime: '10', drainSeconds: 600 }, /^--drain /],
    ['a grace period as long as the drain margin', { graceSeconds: 600 }, /^--grace /],
    // sbatch(1) --signal: "sig_time ... may not exceed 65535 seconds", so a longer drain renders a script sbatch refuses.
    ['a drain margin sbatch --signal cannot carry', { walltime: '2-00:00:00', drainSeconds: 65_536 }, /^--drain must be at most 65535 seconds \(the longest sbatch --signal warning\)$/],
    ['zero nodes', { nodes: 0 }, /^--nodes /],
    ['a negative requeue bound', { maxRequeues: -1 }, /^--max-requeues must be a whole number from 0 to 100$/],
    ['a requeue bound above any policy\'s pilot.max_restarts', { maxRequeues: 101 }, /^--max-requeues must be a whole number from 0 to 100$/],
    ['more nodes than one job fans out to', { nodes: 1001 }, /^--nodes must be a whole number from 1 to 1000$/],
    ['a fractional cpu count', { cpus: 1.5 }, /^--cpus /],
    ['plain http for the broker', { brokerUrl: 'http://broker.example.org' }, /^--broker /],
    ['a broker URL with a query', { brokerUrl: 'https://broker.example.org/?a=$(id)' }, /^--broker /],
    ['a broker URL with user info', { brokerUrl: 'https://u@broker.example.org' }, /^--broker /],
    ['a relative CA file', { caFile: 'ca.pem' }, /^--ca-file /],
    ['a space in the enrolment path', { enrolmentFile: '/stage/my file' }, /^--enrolment-file /],
    ['a parent reference in the log dir', { logDir: '/home/../etc' }, /^--log-dir /],
    ['a percent sign sbatch expands in the log dir', { logDir: '/logs/%u' }, /^--log-dir /],
    ['a port out of range', { collector: 'cm.example.org:70000' }, /^--collector /],
    ['a quote in the trust domain', { trustDomain: 'pool"x' }, /^--trust-domain /],
    ['no allowed owner', { allowedOwners: [] }, /^--allowed-owners /],
    ['a ClassAd quote in an owner', { allowedOwners: ['alice", "x'] }, /^--allowed-owners /],
    ['a glob in the command', { command: 'condor_master *' }, /^--command /],
    ['a semicolon in the command', { command: 'condor_master;id' }, /^--command /],
  ])('refuses %s', (_, bad, message) => {
    expect(() => renderPilotScript({ ...BASE, ...bad })).toThrow(message)
  })

  it('refuses every name that carries a character outside the allow-list (property)', () => {
    const unsafe = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => /[^A-Za-z0-9_.-]/.test(s))
    fc.assert(fc.property(unsafe, (s) => {
      expect(() => renderPilotScript({ ...BASE, site: `a${s}` })).toThrow(/^--site /)
      expect(() => renderPilotScript({ ...BASE, partition: `a${s}` })).toThrow(/^--partition /)
    }), { numRuns: 200 })
  })
})

describe('condor-token-broker pilot script', () => {
  const args = ['pilot', 'script', '--site', 'S1', '--partition', 'p', '--walltime', '120', '--nodes', '1', '--cpus', '4', '--mem', '8000',
    '--broker', 'https://b.example.org', '--ca-file', '/etc/ca.pem', '--enrolment-file', '/stage/e', '--log-dir', '/logs',
    '--collector', 'cm.example.org:9619', '--trust-domain', 'pool.example.org', '--allowed-owners', 'alice,bob']

  it('writes the script to --out and says so on stderr', async () => {
    const out = join(tempDir(), 'p.sbatch')
    const r = await cli([...args, '--out', out], {})
    expect(r).toEqual({ code: 0, out: '', err: `wrote ${out}` })
    expect(readFileSync(out, 'utf8')).toContain('#SBATCH --signal=B:USR1@300\n')
  })

  it('refuses an unsafe value with one line and exit 2', async () => {
    const r = await cli([...args, '--site', 'a b'], {})
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/^condor-token-broker: --site must be .*$/)
    expect(r.out).toBe('')
  })

  it('renders the longest drain sbatch --signal takes, and refuses one second more with one line and exit 2', async () => {
    const long = [...args, '--walltime', '2-00:00:00']
    const ok = await cli([...long, '--drain', '65535'], {})
    expect(ok.code).toBe(0)
    expect(ok.out).toContain('#SBATCH --signal=B:USR1@65535\n')
    const r = await cli([...long, '--drain', '65536'], {})
    expect(r).toEqual({ code: 2, out: '', err: 'condor-token-broker: --drain must be at most 65535 seconds (the longest sbatch --signal warning)' })
  })

  it('names a missing required option', async () => {
    const r = await cli(['pilot', 'script', '--site', 'S1'], {})
    expect(r).toMatchObject({ code: 2, err: 'condor-token-broker: --partition is required (see pilot script --help)' })
  })

  it('lists script under pilot --help and refuses an unknown pilot command', async () => {
    expect((await cli(['pilot', '--help'], {})).out).toContain('script ')
    expect(await cli(['pilot', 'launch'], {})).toMatchObject({ code: 2, err: 'condor-token-broker: unknown pilot command "launch" (see pilot --help)' })
  })
})
