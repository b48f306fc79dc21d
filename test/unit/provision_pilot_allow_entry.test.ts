import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { planCluster } from '../../src/clients/provision/plan.ts'

// Render admits a pilot group at the collector by one ALLOW entry, `pilot-<site>-*@pilots.<trust domain>`
// (docs/provisioning.md), but the pilots' identity is the policy's (`pilot.identity`, any template naming
// {site}, {slurm_job_id} and {node}). Under another identity template the rendered collector refuses every
// pilot of the group, and the operator learns it only once the pilots start. plan learns that template from
// the enrolment explanation (limits.identity): it must say when render's entry does not admit it. The match below is HTCondor's ALLOW-list
// wildcard as documented (`*` stands for any run of characters), written here, not taken from the code.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>
const TD = 'pool.example.org'
const bearer = `e30.${Buffer.from(JSON.stringify({ iss: 'https://iam.example.org/', sub: 'operator' })).toString('base64url')}.sig`

function broker(pilotIdentity: string | undefined): BrokerClient {
  return {
    base: 'https://broker.example.org',
    explain: async (r: { role: string; pilot_enrolment?: unknown }) => r.pilot_enrolment
      ? { decision: { allow: true, ruleId: 'r' }, limits: { max_count: 256, enrolment_lifetime: { default: 86400, max: 7 * 86400 }, up_to: true, max_restarts: 2, ...(pilotIdentity !== undefined ? { identity: pilotIdentity } : {}) } }
      : { decision: { allow: true, ruleId: 'r', identity: r.role === 'pilot' ? `pilot-hpc-b-0@pilots.${TD}` : `${r.role}@${TD}` } },
    checkCertificate: async () => ({ allow: true, rule: 'r', lifetime: 3600 }),
  } as unknown as BrokerClient
}

const pilotTokenStep = async (identity: string | undefined) => {
  const steps = await planCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker: broker(identity), bearer })
  return steps.find((s) => s.node === 'hpc' && s.request.startsWith('pilot token'))!
}

describe('provision plan: the pilots\' identity against the ALLOW entry render writes for them', () => {
  it.each([`pilot-{site}-{slurm_job_id}-{node}@pilots.${TD}`, `pilot-{site}-{node}-{slurm_job_id}@pilots.${TD}`])('allows pilot.identity %s', async (template) => {
    const step = await pilotTokenStep(template)
    expect(step.answer).toBe('allow')
  })

  it.each([
    [`{site}-{slurm_job_id}-{node}@pilots.${TD}`, `hpc-b-0-node0@pilots.${TD}`],
    [`pilot-{site}-{slurm_job_id}-{node}@batch.${TD}`, `pilot-hpc-b-0-node0@batch.${TD}`],
    [`pilot-other-{slurm_job_id}-{node}@pilots.${TD}`, `pilot-other-0-node0@pilots.${TD}`],
  ])('refuses the step when pilot.identity is %s, which the collector would not admit', async (template, identity) => {
    const step = await pilotTokenStep(template)
    expect(step.answer).toBe('deny')
    expect(step.reason).toContain(`pilot-hpc-b-*@pilots.${TD}`)
    expect(step.reason).toContain(identity)
  })

  it('refuses the step when the broker does not say what pilots are named (an answer that cannot be checked)', async () => {
    const step = await pilotTokenStep(undefined)
    expect(step.answer).toBe('deny')
    expect(step.reason).toContain(`pilot-hpc-b-*@pilots.${TD}`)
  })
})
