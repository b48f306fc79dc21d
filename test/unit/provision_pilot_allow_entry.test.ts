import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { planCluster } from '../../src/clients/provision/plan.ts'

// Render admits a pilot group at the collector by one ALLOW entry built from the pilots' identity, which is the
// policy's (`pilot.identity`): its fixed head (site and enrolment, each ended by a separator no site name holds)
// and one `*` for the job and node (docs/provisioning.md). plan learns the template from the enrolment
// explanation (limits.identity) and must refuse one from which no entry admits one group alone: a broker that
// does not name the enrolment in pilot identities (every cluster's pilots at the site would be admitted), or one
// whose site is ended by a character a site name holds (`pilot-hpc-*` admits site hpc-b's pilots).
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
  it.each([`pilot+{site}+{enrolment}+{slurm_job_id}-{node}@pilots.${TD}`, `pilot~{enrolment}~{site}~{node}-{slurm_job_id}@pilots.${TD}`])('allows pilot.identity %s', async (template) => {
    const step = await pilotTokenStep(template)
    expect(step.answer).toBe('allow')
  })

  it.each([
    // the shape before enrolments were named: every cluster's pilots at the site, and site hpc-b-x's, share the head
    [`pilot-{site}-{slurm_job_id}-{node}@pilots.${TD}`, 'does not name the pilot\'s enrolment'],
    // a site ended by `-`: the head pilot-hpc-b- would also admit a site hpc-b-x
    [`pilot-{site}-{enrolment}+{slurm_job_id}-{node}@pilots.${TD}`, 'no ALLOW entry can admit this group alone'],
  ])('refuses the step when pilot.identity is %s', async (template, why) => {
    const step = await pilotTokenStep(template)
    expect(step.answer).toBe('deny')
    expect(step.reason).toContain(why)
  })

  it('refuses the step when the broker does not say what pilots are named (an answer that cannot be checked)', async () => {
    const step = await pilotTokenStep(undefined)
    expect(step.answer).toBe('deny')
    expect(step.reason).toContain('does not say the identity pilot tokens carry')
  })
})
