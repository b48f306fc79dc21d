import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { renderCluster, type ManifestCertificate, type ManifestToken } from '../../src/clients/provision/render.ts'
import { TemplateError } from '../../src/clients/provision/template/load_template.ts'

// Template and input values render writes into 50-broker.conf and condor_mapfile. HTCondor ends a config
// value at the end of its line, joins the next line to one that ends in "\", and splits ALLOW lists at
// commas; a mapfile line is fields separated by spaces. A value carrying any of these would add knobs or
// mapfile lines of its own, or widen an ALLOW list, in every bundle: render must refuse it at its
// property, before the broker is asked for anything.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>
const lineOf = (t: string, re: RegExp) => t.split('\n').findIndex((l) => re.test(l)) + 1

/** A broker that records what it was asked; any token request counts as something issued. */
function recordingBroker(): { broker: BrokerClient; asked: string[] } {
  const asked: string[] = []
  const jwt = (claims: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
  const broker = {
    base: 'https://broker.example.org',
    caCertificate: async () => '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
    metadata: async () => ({ issuer: 'https://broker.example.org' }),
    daemonToken: async (role: string, host: string) => { asked.push(`token ${role} ${host}`); return { token: jwt({ iss: 'pool.example.org', jti: `j-${asked.length}`, sub: `${role}@pool.example.org`, exp: 2_000_000_000 }), expiresIn: 3600 } },
    certificate: async (req: { dns: string[] }) => { asked.push(`certificate ${req.dns[0]}`); return { certificate: 'PEM', serial: `s${asked.length}`, notAfter: 2_000_000_000 } },
    pilotEnrolment: async (_role: string, site: string) => { asked.push(`enrolment ${site}`); return { token: jwt({ jti: 'e', sub: 'pilot', exp: 2_000_000_000 }), expiresIn: 3600, answer: { pilot_identity: 'pilot+hpc-b+e+{slurm_job_id}-{node}@pilots.pool.example.org' } } },
  } as unknown as BrokerClient
  return { broker, asked }
}

async function render(templateText: string, more: Record<string, unknown> = {}) {
  const { broker, asked } = recordingBroker()
  const issued = { tokens: [] as ManifestToken[], certificates: [] as ManifestCertificate[] }
  const result = renderCluster({ templateText, templateFile: EXAMPLE, inputs: { ...inputs, ...more }, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }, issued)
  return { result, asked, issued }
}

describe('provision render: values written into HTCondor configuration', () => {
  it('renders the example as it stands (the checks refuse nothing legitimate)', async () => {
    const { result } = await render(text)
    const { bundles } = await result
    const cm = bundles.find((b) => b.name === 'cm')!.files.find((f) => f.path === 'condor_config.d/50-broker.conf')!.content
    expect(cm.split('\n')).toContain('TRUST_DOMAIN = pool.example.org')
  })

  it.each([
    ['a newline (the rest becomes a knob of its own)', 'pool.example.org\nSEC_DEFAULT_AUTHENTICATION=OPTIONAL'],
    ['a trailing backslash (HTCondor joins the next line to it)', 'pool.example.org\\'],
  ])('refuses a trust_domain input with %s, at the property, before asking the broker', async (_why, value) => {
    const { result, asked } = await render(text, { trust_domain: value })
    const err = await result.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).line).toBe(lineOf(text, /^ +trust_domain: \{ get_input/))
    expect((err as TemplateError).message).toContain('cm.trust_domain')
    expect(asked).toEqual([])
  })

  it('refuses an IAM issuer input that would add a line to the mapfile', async () => {
    const { result, asked } = await render(text, { iam_issuer: 'https://iam.example.org/\nSCITOKENS evil,alice condor' })
    const err = await result.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).line).toBe(lineOf(text, /^ +user_mapping: /))
    expect((err as TemplateError).message).toContain('ap.user_mapping.scitokens_issuer')
    expect(asked.filter((a) => a.includes('ap1.'))).toEqual([])
  })

  it('refuses a subject domain with a comma, which would add "*" to the schedd\'s ALLOW_WRITE', async () => {
    const widened = text.replace('subject_domain: users.hybrid', 'subject_domain: "users.hybrid, *"')
    const { result, asked } = await render(widened)
    const err = await result.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).message).toContain('ap.user_mapping.subject_domain')
    expect(asked.filter((a) => a.includes('ap1.'))).toEqual([])
  })

  it('refuses a user-mapping group with a newline, which would add a line to the mapfile', async () => {
    // The groups are named in a comment line of condor_mapfile; a newline in one starts a mapping of its own.
    const injected = text.replace('groups: [ /htc/users ]', 'groups: [ "/htc/users\\nSCITOKENS /.*,(.*)/ condor@pool.example.org" ]')
    const { result, asked } = await render(injected)
    const err = await result.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).line).toBe(lineOf(text, /^ +user_mapping: /))
    expect((err as TemplateError).message).toContain('ap.user_mapping.groups')
    expect(asked.filter((a) => a.includes('ap1.'))).toEqual([])
  })

  // docs/htcondor-tokens.md §2.1: a client presents only a token whose iss is the server's TRUST_DOMAIN and
  // skips any other silently. Bundles that set another TRUST_DOMAIN than the broker signs would make a pool
  // whose daemons never present their tokens.
  it("refuses a trust_domain that is not the iss of the broker's tokens, and leaves what it got to be revoked", async () => {
    const { result, issued } = await render(text, { trust_domain: 'other.example.org' })
    const err = await result.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).line).toBe(lineOf(text, /^ +trust_domain: \{ get_input/))
    expect((err as TemplateError).message).toContain('pool.example.org')
    // The pilot group's enrolment is asked for first (its iss is the operator's IAM, so it cannot show the
    // mismatch); the central manager's token shows it.
    expect(issued.tokens.map((t) => t.node)).toEqual(['hpc', 'cm'])
  })

  // COLLECTOR_NAME runs to the end of its line, and pool names with spaces are common (HTCondor's own
  // default is "Personal Condor at $(FULL_HOSTNAME)"): a space is no way out of the value.
  it('renders a pool name with spaces as the collector name', async () => {
    const { result } = await render(text.replace('pool_name: hybrid', 'pool_name: "Hybrid Pool at Example Lab"'))
    const { bundles } = await result
    const cm = bundles.find((b) => b.name === 'cm')!.files.find((f) => f.path === 'condor_config.d/50-broker.conf')!.content
    expect(cm.split('\n')).toContain('COLLECTOR_NAME = Hybrid Pool at Example Lab')
  })

  it('refuses a pool name that ends in a backslash', async () => {
    const { result, asked } = await render(text.replace('pool_name: hybrid', 'pool_name: "hybrid\\\\"'))
    const err = await result.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).line).toBe(lineOf(text, /^ +pool_name: /))
    expect(asked).toEqual([])
  })

  // docs/provisioning.md: `{n}` stands for 1..count of a scaled startd. On the host of a central manager or
  // a schedd nothing replaces it: it would be written as it stands into COLLECTOR_HOST or the audience.
  it('refuses {n} in the host of a central manager, before asking the broker', async () => {
    const { result, asked } = await render(text.replace('"cm.", { get_input', '"cm-{n}.", { get_input'))
    const err = await result.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).message).toMatch(/cm: \{n\} stands for the index of a scaled startd/)
    expect(asked).toEqual([])
  })

  // "checked once functions are resolved and before the broker is asked for anything": a bad value in a
  // node realised late (the startds come after the central manager and the schedd) must not leave tokens
  // and certificates issued, then revoked, for the nodes before it.
  it('refuses a bad value in a later node before the broker issues anything for earlier ones', async () => {
    const { result, asked, issued } = await render(text.replace('properties: { site: cloud-a, count:', 'properties: { site: "cloud-a,*", count:'))
    const err = await result.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).message).toContain('workers.site')
    expect(asked).toEqual([])
    expect(issued.tokens).toEqual([])
  })

  it('refuses a bad pilot property before the broker issues anything for the daemons', async () => {
    const { result, asked } = await render(text, { pilot_command: 'condor_master -f;reboot' })
    const err = await result.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).message).toContain('hpc.command')
    expect(asked).toEqual([])
  })
})
