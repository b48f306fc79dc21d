import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { renderCluster, type ManifestCertificate, type ManifestToken } from '../../src/clients/provision/render.ts'
import { TemplateError } from '../../src/clients/provision/template/load_template.ts'

// A pilot group's sbatch script carries the broker's URL, and the script renderer takes only an https URL
// with a host name, an optional port and a plain path. --broker is known before anything is asked, so
// render must refuse a URL the script would refuse before the broker issues the central manager's,
// schedd's and startds' tokens and certificates, not after (when they would only be revoked again).
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>

function recordingBroker(base: string): { broker: BrokerClient; asked: string[] } {
  const asked: string[] = []
  const jwt = (claims: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
  const broker = {
    base,
    caCertificate: async () => '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
    metadata: async () => ({ issuer: base }),
    daemonToken: async (role: string, host: string) => { asked.push(`token ${role} ${host}`); return { token: jwt({ iss: 'pool.example.org', jti: `j-${asked.length}`, sub: `${role}@pool.example.org`, exp: 2_000_000_000 }), expiresIn: 3600 } },
    certificate: async (req: { dns: string[] }) => { asked.push(`certificate ${req.dns[0]}`); return { certificate: 'PEM', serial: `s${asked.length}`, notAfter: 2_000_000_000 } },
    pilotEnrolment: async (_role: string, site: string) => { asked.push(`enrolment ${site}`); return { token: jwt({ jti: 'e', sub: 'pilot', exp: 2_000_000_000 }), expiresIn: 3600, answer: { pilot_identity: 'pilot+hpc-b+e+{slurm_job_id}-{node}@pilots.pool.example.org' } } },
  } as unknown as BrokerClient
  return { broker, asked }
}

describe('provision render: the broker URL a pilot group is given', () => {
  it('refuses a broker URL the sbatch script refuses (an IPv6 literal) before asking the broker for anything', async () => {
    const { broker, asked } = recordingBroker('https://[2001:db8::1]:8443')
    const issued = { tokens: [] as ManifestToken[], certificates: [] as ManifestCertificate[] }
    const err = await renderCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }, issued)
      .then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as Error).message).toContain('hpc: the sbatch pilot refuses it: --broker must be an https:// URL')
    expect(asked).toEqual([])
    expect(issued).toEqual({ tokens: [], certificates: [] })
  })

  it('renders the example against a broker URL with a port and a path', async () => {
    const { broker } = recordingBroker('https://broker.example.org:8443/ctb')
    const { bundles } = await renderCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 })
    const script = bundles.find((b) => b.name === 'hpc')!.files.find((f) => f.path === 'pilot.sbatch')!.content
    expect(script).toContain('https://broker.example.org:8443/ctb')
  })
})

// docs/provisioning.md, "A pilot group's credential": every run of the job (the first and up to max_requeues
// requeued ones) redeems once per node, plus one spare redemption per node for a retry after a lost answer;
// and the credential must outlive a queue wait and walltime per run.
describe('provision render: the count and lifetime a pilot group\'s credential is asked for', () => {
  async function askedFor(templateText: string) {
    const { broker } = recordingBroker('https://broker.example.org')
    const calls: Array<{ count: number; lifetime: number }> = []
    const inner = broker.pilotEnrolment.bind(broker)
    broker.pilotEnrolment = async (role, site, count, lifetime) => { calls.push({ count, lifetime }); return inner(role, site, count, lifetime) }
    const { bundles } = await renderCluster({ templateText, templateFile: EXAMPLE, inputs: { ...inputs, pilot_nodes: 3, pilot_walltime: 7200 }, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 })
    return { calls, script: bundles.find((b) => b.name === 'hpc')!.files.find((f) => f.path === 'pilot.sbatch')!.content }
  }

  it('asks, by default (2 requeues), for 3 nodes x (3 runs + 1 spare) = 12 redemptions living 3 x (3600 + 7200) s', async () => {
    const { calls, script } = await askedFor(text)
    expect(calls).toEqual([{ count: 12, lifetime: 32_400 }])
    expect(script).toContain('readonly MAX_REQUEUES=2\n')
  })

  it('asks, for the example\'s largest pilot group, no more than the example policy\'s pilot grant allows', async () => {
    // docs/provisioning.md: "the example policy allows 256: its 64-node maximum x 4". The template's own bounds
    // (pilot_nodes up to 64, pilot_walltime up to 172800 s) against the policy file as shipped.
    const declared = (parse(text) as { topology_template: { inputs: Record<string, { constraints: Array<{ in_range: [number, number] }> }> } }).topology_template.inputs
    const nodes = declared.pilot_nodes!.constraints[0]!.in_range[1]
    const walltime = declared.pilot_walltime!.constraints[0]!.in_range[1]
    expect([nodes, walltime]).toEqual([64, 172_800])
    const policy = parse(readFileSync('examples/provisioning/policies/50-provisioning.yaml', 'utf8')) as { rules: Array<{ grants: Array<{ role: string; pilot?: { max_count: number; enrolment_lifetime: { max: string } } }> }> }
    const grant = policy.rules.flatMap((r) => r.grants).find((g) => g.pilot !== undefined)!
    expect(grant.pilot!.enrolment_lifetime.max).toBe('7d')
    const { broker } = recordingBroker('https://broker.example.org')
    const calls: Array<{ count: number; lifetime: number }> = []
    broker.pilotEnrolment = async (_role, _site, count, lifetime) => { calls.push({ count, lifetime }); return { token: `e30.${Buffer.from('{"jti":"e","sub":"p","exp":2000000000}').toString('base64url')}.sig`, expiresIn: 3600, answer: { pilot_identity: 'pilot+hpc-b+e+{slurm_job_id}-{node}@pilots.pool.example.org' } } }
    await renderCluster({ templateText: text, templateFile: EXAMPLE, inputs: { ...inputs, pilot_nodes: nodes, pilot_walltime: walltime }, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 })
    // 64 x (2 requeues + 1 first run + 1 spare); 3 runs x (3600 + 172800) s, within 7 days (604800 s).
    expect(calls).toEqual([{ count: 256, lifetime: 529_200 }])
    expect(calls[0]!.count).toBeLessThanOrEqual(grant.pilot!.max_count)
    expect(calls[0]!.lifetime).toBeLessThanOrEqual(7 * 86_400)
  })

  it.each([-1, 101])('refuses max_requeues %i at its template line before asking the broker for anything', async (value) => {
    // 0 to 100: the script's --max-requeues and the policy's pilot.max_restarts share that range (docs/pilots-script.md).
    const bad = text.replace('        queue_estimate_s: 3600\n', `        queue_estimate_s: 3600\n        max_requeues: ${value}\n`)
    expect(bad).not.toBe(text)
    const line = bad.split('\n').findIndex((l) => l.startsWith('        max_requeues: ')) + 1
    const { broker, asked } = recordingBroker('https://broker.example.org')
    const issued = { tokens: [] as ManifestToken[], certificates: [] as ManifestCertificate[] }
    const err = await renderCluster({ templateText: bad, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }, issued)
      .then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as Error).message).toBe(`${EXAMPLE}:${line}:23: hpc.max_requeues (${value}) must be a whole number from 0 to 100`)
    expect(asked).toEqual([])
    expect(issued).toEqual({ tokens: [], certificates: [] })
  })

  it('refuses a negative queue_estimate_s at its template line before asking the broker for anything', async () => {
    // The credential's lifetime is runs x (queue estimate + walltime): a negative wait would ask for a lifetime
    // shorter than the walltime, or below zero, which the broker refuses only after the other nodes' tokens.
    const bad = text.replace('        queue_estimate_s: 3600\n', '        queue_estimate_s: -99999\n')
    expect(bad).not.toBe(text)
    const line = bad.split('\n').findIndex((l) => l.startsWith('        queue_estimate_s: ')) + 1
    const { broker, asked } = recordingBroker('https://broker.example.org')
    const issued = { tokens: [] as ManifestToken[], certificates: [] as ManifestCertificate[] }
    const err = await renderCluster({ templateText: bad, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }, issued)
      .then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as Error).message).toBe(`${EXAMPLE}:${line}:27: hpc.queue_estimate_s (-99999) must be a whole number of seconds, 0 or more`)
    expect(asked).toEqual([])
  })

  it('with max_requeues: 0 asks for 3 x (1 + 1 spare) = 6 living 10800 s, and the script is not requeued', async () => {
    const noRequeue = text.replace('        queue_estimate_s: 3600\n', '        queue_estimate_s: 3600\n        max_requeues: 0\n')
    expect(noRequeue).not.toBe(text)
    const { calls, script } = await askedFor(noRequeue)
    expect(calls).toEqual([{ count: 6, lifetime: 10_800 }])
    expect(script).toContain('\n#SBATCH --no-requeue\n')
  })
})

// Render builds the group's collector entry from the broker's pilot_identity; it takes it only when it names the
// group's site and the credential just issued (docs/provisioning.md). Otherwise the template fails at the group,
// and the credential, already issued, is listed for the caller to revoke.
describe('provision render: the pilot_identity the broker answers', () => {
  it.each([
    ['another site', 'pilot+hpc-a+e+{slurm_job_id}-{node}@pilots.pool.example.org'],
    ['another credential', 'pilot+hpc-b+f+{slurm_job_id}-{node}@pilots.pool.example.org'],
  ])('is refused when it names %s, before any daemon credential is asked for', async (_what, pattern) => {
    const { broker, asked } = recordingBroker('https://broker.example.org')
    const inner = broker.pilotEnrolment.bind(broker)
    broker.pilotEnrolment = async (role, site, count, lifetime) => ({ ...(await inner(role, site, count, lifetime)), answer: { pilot_identity: pattern } })
    const issued = { tokens: [] as ManifestToken[], certificates: [] as ManifestCertificate[] }
    const err = await renderCluster({ templateText: text, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }, issued)
      .then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as Error).message).toContain('hpc: the broker names this group\'s pilots')
    expect((err as Error).message).toContain('which does not name site hpc-b and enrolment e (the credential it just issued)')
    expect(asked).toEqual(['enrolment hpc-b'])
    expect(issued.tokens.map((t) => [t.jti, t.kind])).toEqual([['e', 'pilot_enrolment']])
  })
})

