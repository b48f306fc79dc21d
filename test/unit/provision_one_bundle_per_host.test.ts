import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { planCluster } from '../../src/clients/provision/plan.ts'
import { renderCluster, type ManifestCertificate, type ManifestToken } from '../../src/clients/provision/render.ts'
import { TemplateError } from '../../src/clients/provision/template/load_template.ts'

// Every daemon bundle installs to the same paths on its host (docs/provisioning.md, "What render writes":
// /etc/condor/config.d/50-broker.conf, /etc/condor/tokens.d/, /etc/condor/certs/host.key). Two daemon nodes on
// one host (a central manager and an access point on one small machine, say) give two bundles whose user-data
// each overwrite the other's configuration and host key: the host ends up one role or the other, and the
// tokens and certificate of the lost one were minted, audited and listed for a node that never runs them.
// Render must refuse it before asking the broker for anything, and plan with the same line.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>
const bearer = `e30.${Buffer.from(JSON.stringify({ iss: 'https://iam.example.org/', sub: 'operator' })).toString('base64url')}.sig`

function recordingBroker(): { broker: BrokerClient; asked: string[] } {
  const asked: string[] = []
  const jwt = (claims: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
  const broker = {
    base: 'https://broker.example.org',
    caCertificate: async () => '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
    metadata: async () => ({ issuer: 'https://broker.example.org' }),
    daemonToken: async (role: string, host: string) => { asked.push(`token ${role} ${host}`); return { token: jwt({ iss: 'pool.example.org', jti: `j-${asked.length}`, sub: `${role}-${asked.length}@pool.example.org`, exp: 2_000_000_000 }), expiresIn: 3600 } },
    certificate: async (req: { dns: string[] }) => { asked.push(`certificate ${req.dns[0]}`); return { certificate: 'PEM', serial: `${asked.length}`, notAfter: 2_000_000_000 } },
    pilotEnrolment: async (_role: string, site: string) => { asked.push(`enrolment ${site}`); return { token: jwt({ jti: 'e', sub: 'operator', exp: 2_000_000_000 }), expiresIn: 3600, answer: { pilot_identity: 'pilot+hpc-b+e+{slurm_job_id}-{node}@pilots.pool.example.org' } } },
    explain: async (r: { role: string; host?: string }) => { asked.push(`explain ${r.role} ${r.host ?? ''}`); return { decision: { allow: true, ruleId: 'r', identity: `${r.role}@pool.example.org` } } },
    checkCertificate: async () => ({ allow: true, rule: 'r', lifetime: 3600 }),
  } as unknown as BrokerClient
  return { broker, asked }
}

const apOnCmHost = text.replace('address: { concat: [ "ap1.", { get_input: cloud_domain } ] }', 'address: { concat: [ "CM.", { get_input: cloud_domain } ] }')

describe('provision render and plan: one daemon bundle per host', () => {
  it('refuses an access point on the central manager\'s host before asking the broker for anything', async () => {
    expect(apOnCmHost).not.toBe(text)
    const { broker, asked } = recordingBroker()
    const issued = { tokens: [] as ManifestToken[], certificates: [] as ManifestCertificate[] }
    const err = await renderCluster({ templateText: apOnCmHost, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }, issued).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as Error).message).toContain('ap: its host CM.cloud-a.example.org is also the host of cm')
    expect(asked).toEqual([])
    expect(issued).toEqual({ tokens: [], certificates: [] })

    const planned = await planCluster({ templateText: apOnCmHost, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, bearer }).then(() => undefined, (e: unknown) => e)
    expect((planned as Error).message).toBe((err as Error).message)
  })

  it('refuses a startd scaled onto the access point\'s host', async () => {
    const onAp = text.replace('address: { concat: [ "ep-{n}.", { get_input: cloud_domain } ] }', 'address: { concat: [ "ap{n}.", { get_input: cloud_domain } ] }')
    expect(onAp).not.toBe(text)
    const { broker, asked } = recordingBroker()
    const err = await renderCluster({ templateText: onAp, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as Error).message).toContain('workers: its host ap1.cloud-a.example.org is also the host of ap')
    expect(asked).toEqual([])
  })

  it('refuses an access point on the central manager\'s host written as an absolute name (trailing dot)', async () => {
    // RFC 1034 §3.1: a name ending in a dot is the absolute form of the same name, the same host.
    const absolute = text.replace('address: { concat: [ "ap1.", { get_input: cloud_domain } ] }', 'address: { concat: [ "cm.", { get_input: cloud_domain }, "." ] }')
    expect(absolute).not.toBe(text)
    const { broker, asked } = recordingBroker()
    const err = await renderCluster({ templateText: absolute, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as Error).message).toContain('ap: its host cm.cloud-a.example.org. is also the host of cm')
    expect(asked).toEqual([])
  })

  it('renders the example, whose daemons have hosts of their own', async () => {
    const { broker } = recordingBroker()
    const { bundles } = await renderCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 })
    expect(bundles.map((b) => b.name)).toEqual(['cm', 'ap', 'workers-1', 'workers-2', 'hpc'])
  })
})
