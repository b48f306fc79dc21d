import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { planCluster } from '../../src/clients/provision/plan.ts'
import { renderCluster } from '../../src/clients/provision/render.ts'
import { TemplateError } from '../../src/clients/provision/template/load_template.ts'

// docs/htcondor-tokens.md §2.1: a client presents only a token whose iss is the server's TRUST_DOMAIN, so
// render stops when the central manager's trust_domain is not the iss of the broker's tokens (after the
// first token, which it then revokes). plan promises to refuse, with the same line, what render refuses;
// policy explain already says the trust domain an IDTOKEN would be issued for (an allowed IDTOKEN decision's
// only target, docs/policies.md), so plan can say it before anything is minted.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = { ...parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>, trust_domain: 'pool.example.org' }
const bearer = `e30.${Buffer.from(JSON.stringify({ iss: 'https://iam.example.org/', sub: 'operator' })).toString('base64url')}.sig`
const BROKER_TD = 'other-pool.example.org'

const explaining = {
  base: 'https://broker.example.org',
  explain: async (r: { role: string; pilot_enrolment?: unknown }) => ({
    decision: r.pilot_enrolment ? { allow: true, ruleId: 'r' }
      : { allow: true, ruleId: 'r', tokenKind: 'idtoken', audience: [BROKER_TD], identity: r.role === 'pilot' ? `pilot-hpc-b-0@pilots.${BROKER_TD}` : `${r.role}@${BROKER_TD}` },
  }),
  checkCertificate: async () => ({ allow: true, rule: 'r', lifetime: 3600 }),
} as unknown as BrokerClient

const jwt = (claims: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
const minting = {
  base: 'https://broker.example.org',
  caCertificate: async () => '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
  metadata: async () => ({ issuer: 'https://broker.example.org' }),
  daemonToken: async (role: string) => ({ token: jwt({ iss: BROKER_TD, jti: 'j', sub: `${role}@${BROKER_TD}`, exp: 2_000_000_000 }), expiresIn: 3600 }),
  certificate: async () => ({ certificate: 'PEM', serial: '01', notAfter: 2_000_000_000 }),
  pilotEnrolment: async () => ({ token: jwt({ jti: 'e', sub: 'operator', exp: 2_000_000_000 }), expiresIn: 3600, answer: { pilot_identity: 'pilot+hpc-b+e+{slurm_job_id}-{node}@pilots.pool.example.org' } }),
} as unknown as BrokerClient

const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e)

describe('provision plan: a trust domain that is not the broker\'s', () => {
  it('is refused by plan with the line render refuses it with', async () => {
    const rendered = await failure(renderCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker: minting, now: 1_800_000_000 }))
    expect(rendered).toBeInstanceOf(TemplateError)
    expect((rendered as Error).message).toContain(`cm.trust_domain ("pool.example.org") is not the broker's trust domain: its tokens carry iss "${BROKER_TD}"`)
    const planned = await failure(planCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker: explaining, bearer }))
    expect(planned).toBeInstanceOf(TemplateError)
    expect((planned as Error).message).toBe((rendered as Error).message)
  })

  it('plans the template when the trust domains agree', async () => {
    const steps = await planCluster({ templateText: text, templateFile: EXAMPLE, inputs: { ...inputs, trust_domain: BROKER_TD }, inputsFile: 'inputs.yaml', broker: explaining, bearer })
    expect(steps.filter((s) => s.request === 'IDTOKEN').every((s) => s.answer === 'allow')).toBe(true)
  })
})
