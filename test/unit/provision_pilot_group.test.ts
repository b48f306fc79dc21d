import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import { checkPilotGroup, renderPilotGroup } from '../../src/clients/provision/pilot_group.ts'
import { loadTemplate } from '../../src/clients/provision/template/load_template.ts'
import { realiseTemplate, resolveInputs, type ResolvedNode } from '../../src/clients/provision/template/resolve_template.ts'

const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>
const lineOf = (re: RegExp) => text.split('\n').findIndex((l) => re.test(l)) + 1

/** The example's pilot group with `more` inputs, resolved as render sees it. */
async function pilotGroup(more: Record<string, unknown>) {
  const t = loadTemplate(text, EXAMPLE)
  let hpc: ResolvedNode | undefined
  await realiseTemplate(t, resolveInputs(t, { ...inputs, ...more }), async (n) => {
    if (n.name === 'hpc') hpc = n
    return { hostname: 'h', public_address: [], collector_address: 'cm:9618', name: 'ap1', issued_token_jtis: [] }
  })
  return { t, hpc: hpc! }
}

describe('a provisioning pilot group checked by the sbatch renderer', () => {
  it('refuses a drain margin not below the walltime, at the property, naming the resolved value', async () => {
    const { t, hpc } = await pilotGroup({ pilot_walltime: 240 })
    expect(() => checkPilotGroup(t, hpc, 'https://broker.example.org')).toThrow(`${EXAMPLE}:${lineOf(/^ +drain_margin_s: /)}:25: hpc.drain_margin_s (300) must be a whole number from 1 to 239`)
    const ok = await pilotGroup({ pilot_walltime: 240, pilot_drain_margin: 90 })
    expect(() => checkPilotGroup(ok.t, ok.hpc, 'https://broker.example.org')).not.toThrow()
  })

  it('refuses a ".." in a path input, at the first property it reached', async () => {
    const { t, hpc } = await pilotGroup({ pilot_dir: '/scratch/../etc' })
    expect(() => checkPilotGroup(t, hpc, 'https://broker.example.org')).toThrow(`${EXAMPLE}:${lineOf(/^ +log_dir: /)}:18: hpc.log_dir ("/scratch/../etc/logs") must be an absolute path`)
  })

  it('renders the group with the inputs and the broker\'s values', async () => {
    const { hpc } = await pilotGroup({ pilot_command: '/opt/condor/sbin/condor_master -f', pilot_dir: '/site/pilots' })
    const script = renderPilotGroup('hpc', hpc.properties, { brokerUrl: 'https://broker.example.org', collector: 'cm.example.org', trustDomain: 'pool.example.org' })
    expect(script).toContain("readonly COMMAND=('/opt/condor/sbin/condor_master' '-f')")
    expect(script).toContain("readonly ENROLMENT_FILE='/site/pilots/enrolment.cred'")
    expect(script).toContain("readonly BROKER_URL='https://broker.example.org'")
    expect(() => renderPilotGroup('hpc', hpc.properties, { brokerUrl: 'https://broker.example.org', collector: 'cm.example.org', trustDomain: 'bad domain' }))
      .toThrow('pilot group hpc: --trust-domain must be a host-like name')
  })
})
