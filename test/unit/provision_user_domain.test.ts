import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { planCluster } from '../../src/clients/provision/plan.ts'
import { renderCluster, type ManifestCertificate, type ManifestToken } from '../../src/clients/provision/render.ts'
import { TemplateError } from '../../src/clients/provision/template/load_template.ts'
import { allowEntries, readCondorConfig } from '../support/condor_config_read.ts'

// A schedd's user_mapping.subject_domain comes from the template. The mapfile maps every SciToken of the
// template's scitokens_issuer to `<sub>@<subject_domain>`, and `*@<subject_domain>` joins the ALLOW lists.
// Identities in a daemon's domain are the policy's (docs/htcondor-tokens.md §3.3: condor@TD, *@aps.TD,
// *@eps.TD, *@pilots.TD). A subject domain equal to one of them turns a user's SciToken into a daemon
// identity: sub "condor" becomes condor@TD, which every bundle lists in ALLOW_ADMINISTRATOR, and
// `*@eps.TD` in the schedd's ALLOW_WRITE lets every execute point submit. Render must refuse it.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>
const TD = 'pool.example.org'

/** Identities as the example policy names them (examples/provisioning/policies/50-provisioning.yaml). */
function policyLikeBroker(): { broker: BrokerClient; issued: { tokens: ManifestToken[]; certificates: ManifestCertificate[] } } {
  let n = 0
  const jwt = (claims: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
  const sub = (role: string, host: string) => role === 'central-manager' ? `condor@${TD}` : role === 'schedd' ? `schedd-${host.split('.')[0]}@aps.${TD}` : `startd-cloud-a-${host.split('.')[0]}@eps.${TD}`
  const broker = {
    base: 'https://broker.example.org',
    caCertificate: async () => '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
    metadata: async () => ({ issuer: 'https://broker.example.org' }),
    daemonToken: async (role: string, host: string) => ({ token: jwt({ iss: TD, jti: `j-${++n}`, sub: sub(role, host), exp: 2_000_000_000 }), expiresIn: 3600 }),
    certificate: async () => ({ certificate: 'PEM', serial: `s${++n}`, notAfter: 2_000_000_000 }),
    pilotEnrolment: async () => {
      const jti = `e-${++n}`
      // As the broker answers: the name of this credential's pilots (render checks it names site and credential).
      return { token: jwt({ jti, sub: 'operator', exp: 2_000_000_000 }), expiresIn: 3600, answer: { pilot_identity: `pilot+hpc-b+${jti}+{slurm_job_id}-{node}@pilots.pool.example.org` } }
    },
  } as unknown as BrokerClient
  return { broker, issued: { tokens: [], certificates: [] } }
}

const withDomain = (d: string) => text.replace('subject_domain: users.hybrid', `subject_domain: ${d}`)

describe('provision render: a user mapping domain is never a daemon identity domain', () => {
  it('renders the example (users.hybrid): the schedd admits users only in their own domain', async () => {
    const { broker } = policyLikeBroker()
    const { bundles } = await renderCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 })
    const conf = readCondorConfig(bundles.find((b) => b.name === 'ap')!.files.find((f) => f.path === 'condor_config.d/50-broker.conf')!.content)
    expect(conf.odd).toEqual([])
    expect(allowEntries(conf.knobs.get('ALLOW_WRITE'))).toEqual([`condor@${TD}`, '*@users.hybrid'])
    expect(allowEntries(conf.knobs.get('ALLOW_ADMINISTRATOR'))).toEqual([`condor@${TD}`])
  })

  it.each([TD, `aps.${TD}`, `eps.${TD}`, `pilots.${TD}`, `EPS.${TD.toUpperCase()}`])('refuses subject_domain %s at its line, issuing nothing that is not revoked', async (domain) => {
    const bad = withDomain(domain)
    expect(bad).not.toBe(text)
    const line = bad.split('\n').findIndex((l) => l.includes(`subject_domain: ${domain}`)) + 1
    const { broker, issued } = policyLikeBroker()
    const err = await renderCluster({ templateText: bad, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }, issued)
      .then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).line).toBe(line)
    expect((err as Error).message).toContain(`ap.user_mapping.subject_domain (${domain}) is a domain the broker issues daemon identities in`)
  })
})

describe('provision plan: refuses the daemon-domain user mapping render refuses, with the same line', () => {
  const bearer = `e30.${Buffer.from(JSON.stringify({ iss: 'https://iam.example.org/', sub: 'operator' })).toString('base64url')}.sig`
  function explainingBroker(): BrokerClient {
    const identity = (role: string, host?: string) => role === 'central-manager' ? `condor@${TD}` : role === 'schedd' ? `schedd-ap1@aps.${TD}`
      : role === 'pilot' ? `pilot-hpc-b-0@pilots.${TD}` : `startd-cloud-a-${String(host).split('.')[0]}@eps.${TD}`
    return {
      base: 'https://broker.example.org',
      // An enrolment's explanation names the pilots' identity (limits.identity), from which plan builds the entry.
      explain: async (r: { role: string; host?: string; pilot_enrolment?: unknown }) => r.pilot_enrolment
        ? { decision: { allow: true, ruleId: 'r' }, limits: { max_count: 256, enrolment_lifetime: { default: 86400, max: 7 * 86400 }, up_to: true, max_restarts: 2, identity: `pilot+{site}+{enrolment}+{slurm_job_id}-{node}@pilots.${TD}` } }
        : { decision: { allow: true, ruleId: 'r', identity: identity(r.role, r.host) } },
      checkCertificate: async () => ({ allow: true, rule: 'r', lifetime: 3600 }),
    } as unknown as BrokerClient
  }

  it('plans the example', async () => {
    const steps = await planCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker: explainingBroker(), bearer })
    expect(steps.every((s) => s.answer === 'allow')).toBe(true)
  })

  it.each([`eps.${TD}`, `pilots.${TD}`])('refuses subject_domain %s', async (domain) => {
    const bad = withDomain(domain)
    const line = bad.split('\n').findIndex((l) => l.includes(`subject_domain: ${domain}`)) + 1
    const err = await planCluster({ templateText: bad, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker: explainingBroker(), bearer }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).line).toBe(line)
    expect((err as Error).message).toContain(`ap.user_mapping.subject_domain (${domain}) is a domain the broker issues daemon identities in`)
  })
})
