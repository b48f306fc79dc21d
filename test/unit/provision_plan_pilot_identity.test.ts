import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { planCluster } from '../../src/clients/provision/plan.ts'
import { decisionRequestFrom, ExplainBody } from '../../src/http/routes/policy_explain.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { explain } from '../../src/policy/explain.ts'
import { explainEnrolment } from '../../src/policy/explain_enrolment.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { tempDir } from '../support/tmp.ts'

// A pilot's token is minted at pilot start from the grant's `pilot.identity` (docs/pilots.md; the default is
// pilot-{site}-{slurm_job_id}-{node}@pilots.{trust_domain}), not from the grant's own `identity`, which only a
// direct IDTOKEN request for the role uses. plan checks the pilots' identity against the collector's ALLOW
// entry render writes for the group, pilot-<site>-*@pilots.<trust domain> (HTCondor's `*`: any run of
// characters). It must check the identity pilots will carry, so the broker's real policy engine answers here.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>
const TD = 'pool.example.org'
const IAM = 'https://iam.example.org/'
const bearer = `e30.${Buffer.from(JSON.stringify({ iss: IAM, sub: 'operator', client_id: 'provisioner' })).toString('base64url')}.sig`
const CTX: PolicyContext = {
  trustDomain: TD, uidDomain: TD, vars: { IAM_ISSUER: IAM },
  scitokenProfile: 'wlcg', maxLifetime: { idtoken: 7 * 86400, scitoken: 6 * 3600 },
}

/** The example policy, with the pilot grant's identity lines replaced as given. */
function brokerWith(edit: (policy: string) => string): BrokerClient {
  const shipped = readFileSync('examples/provisioning/policies/50-provisioning.yaml', 'utf8')
  const edited = edit(shipped)
  expect(edited).not.toBe(shipped)
  const dir = join(tempDir(), 'policies')
  mkdirSync(dir)
  writeFileSync(join(dir, '50-provisioning.yaml'), edited)
  const policy = loadPolicies(dir, CTX)
  return {
    base: 'https://broker.example.org',
    explain: async (body: Record<string, unknown>) => {
      const b = ExplainBody.parse(body)
      if (b.pilot_enrolment) {
        const req = decisionRequestFrom(b)
        const x = explainEnrolment(policy, { subject: req.subject, role: b.role, count: b.pilot_enrolment.pilot_count, ...(b.params?.site ? { site: b.params.site } : {}), ...(b.pilot_enrolment.lifetime !== undefined ? { lifetime: b.pilot_enrolment.lifetime } : {}) })
        return JSON.parse(JSON.stringify({ ...x, rules: [] })) as Record<string, unknown>
      }
      return JSON.parse(JSON.stringify(explain(policy, decisionRequestFrom(b)))) as Record<string, unknown>
    },
    checkCertificate: async () => ({ allow: true, rule: 'r', lifetime: 3600 }),
  } as unknown as BrokerClient
}

const pilotSteps = async (broker: BrokerClient) => {
  const steps = await planCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, bearer })
  return steps.filter((s) => s.node === 'hpc')
}


describe('provision plan: the identity pilots carry, against the ALLOW entry render writes', () => {
  it('allows the example policy, whose pilots take the default pilot.identity', async () => {
    const steps = await pilotSteps(brokerWith((p) => p.replace('max_count: 256', 'max_count: 257')))
    expect(steps.map((s) => s.answer)).toEqual(['allow', 'allow'])
  })

  it('allows a grant identity of another shape when pilot.identity, which pilots carry, fits the entry', async () => {
    const steps = await pilotSteps(brokerWith((p) => p.replace('identity: pilot-{site}-{slurm_job_id}@pilots.{trust_domain}', 'identity: hpc-{slurm_job_id}@batch.{trust_domain}')))
    expect(steps.map((s) => s.answer)).toEqual(['allow', 'allow'])
  })
})

describe('provision plan: a user mapping domain against the pilots\' ALLOW entry, as render checks it', () => {
  // Render refuses a subject_domain that is the domain of an entry its ALLOW lists hold for daemons; for a
  // pilot group that entry is pilot+<site>+<enrolment>+*@pilots.<trust domain>, whatever the grant's own identity says.
  // plan promises the same refusal, at the same line (docs/provisioning.md).
  const otherShape = (p: string) => p.replace('identity: pilot-{site}-{slurm_job_id}@pilots.{trust_domain}', 'identity: hpc-{slurm_job_id}@batch.{trust_domain}')
  const withDomain = (d: string) => text.replace('subject_domain: users.hybrid', `subject_domain: ${d}`)
  const plan = (templateText: string) => planCluster({ templateText, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker: brokerWith(otherShape), bearer })
    .then((steps) => steps, (e: unknown) => e as Error)

  it('refuses pilots.<trust domain>, the domain of the entry render writes', async () => {
    const bad = withDomain(`pilots.${TD}`)
    const line = bad.split('\n').findIndex((l) => l.includes(`subject_domain: pilots.${TD}`)) + 1
    const got = await plan(bad)
    expect(got).toBeInstanceOf(Error)
    expect((got as Error).message).toContain(`${EXAMPLE}:${line}:`)
    expect((got as Error).message).toContain(`ap.user_mapping.subject_domain (pilots.${TD}) is a domain the broker issues daemon identities in`)
  })

  it('plans a domain no ALLOW entry for daemons names (the grant\'s own identity is in no bundle)', async () => {
    const got = await plan(withDomain(`batch.${TD}`))
    expect(got).not.toBeInstanceOf(Error)
  })
})
