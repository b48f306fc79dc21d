import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initPoolCa } from '../../src/ca/pool_ca.ts'
import { runCli } from '../../src/cli/main.ts'
import { startE2e, type E2e } from '../support/broker_e2e.ts'

// A pilot group's enrolment asks for pilot_count = nodes × (max_requeues + 2) and a lifetime of
// (max_requeues + 1) × (queue_estimate_s + walltime_s) (docs/provisioning.md). The example group (queue 3600 s,
// default 2 requeues) with 2 nodes and a 7200 s walltime asks for 8 and 32400 s. The policies here allow exactly
// that (max_count 8, enrolment_lifetime.max 9h), one refusing above it, one trimming the lifetime (up_to).
// Plan must say so per group, and render must mint nothing when the broker would refuse the enrolment.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const TD = 'pool.example.org'

interface Site { e2e: E2e; root: string; env: NodeJS.ProcessEnv; caRoot: string }

async function site(upTo: boolean): Promise<Site> {
  const caRoot = mkdtempSync(join(tmpdir(), 'ctb-pilot-grant-'))
  const caDir = join(caRoot, 'ca')
  await initPoolCa(caDir, { name: 'test pool CA', now: Math.floor(Date.now() / 1000) })
  const policies = join(caRoot, 'policies')
  mkdirSync(policies)
  const text = readFileSync('examples/provisioning/policies/50-provisioning.yaml', 'utf8')
  const edited = text.replace('max_count: 256', 'max_count: 8')
    .replace('enrolment_lifetime: { default: 2d, max: 7d }', 'enrolment_lifetime: { default: 2h, max: 9h }')
    .replace(/\n {8}up_to: true\n {8}pilot:/, upTo ? '\n        up_to: true\n        pilot:' : '\n        pilot:')
  if (edited === text || !edited.includes('max_count: 8') || !edited.includes('max: 9h') || edited.includes('up_to: true\n        pilot:') !== upTo) {
    throw new Error('the example policy changed shape; adjust this test')
  }
  writeFileSync(join(policies, '50-provisioning.yaml'), edited)
  const e2e = await startE2e({ CTB_POLICY_DIR: policies, CTB_CA_DIR: caDir, CTB_TRUST_DOMAIN: TD })
  const root = join(e2e.dir, 'work')
  mkdirSync(root)
  writeFileSync(join(root, 'bt'), `${await e2e.robot('provisioner')}\n`, { mode: 0o600 })
  writeFileSync(join(root, 'ca.pem'), e2e.ca)
  return { e2e, root, env: { BEARER_TOKEN_FILE: join(root, 'bt') }, caRoot }
}

async function cli(s: Site, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli([...args, '--broker', s.e2e.broker.url, '--ca-file', join(s.root, 'ca.pem')], { out: (x) => out.push(x), err: (x) => err.push(x), env: s.env })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

function inputs(s: Site, name: string, more: string): string {
  const file = join(s.root, `${name}.yaml`)
  writeFileSync(file, `trust_domain: ${TD}\niam_issuer: ${s.e2e.devIam.issuer}\nstartd_count: 2\n${more}`)
  return file
}

interface Step { node: string; request: string; answer: string; rule?: string; reason?: string; pilot_count?: number; lifetime?: number; granted_lifetime?: number }

async function planSteps(s: Site, inputsFile: string): Promise<{ code: number; enrolment: Step }> {
  const r = await cli(s, ['provision', 'plan', EXAMPLE, '--inputs', inputsFile, '--json'])
  expect(r.err).toBe('')
  const steps = (JSON.parse(r.out) as { steps: Step[] }).steps
  const enrolment = steps.filter((x) => x.node === 'hpc' && x.request === 'pilot enrolment')
  expect(enrolment).toHaveLength(1)
  return { code: r.code, enrolment: enrolment[0]! }
}

async function issuedCount(s: Site): Promise<number> {
  const admin = { authorization: `Bearer ${readFileSync(s.env.BEARER_TOKEN_FILE!, 'utf8').trim()}` }
  const tokens = (await s.e2e.get('/v1/audit?type=token.issued&limit=1000', admin)).body.records as unknown[]
  const certs = (await s.e2e.get('/v1/audit?type=certificate.issued&limit=1000', admin)).body.records as unknown[]
  return tokens.length + certs.length
}

let strict: Site
let trimming: Site

beforeAll(async () => {
  strict = await site(false)
  trimming = await site(true)
}, 90_000)

afterAll(async () => {
  for (const s of [strict, trimming]) {
    await s?.e2e.close()
    if (s) rmSync(s.caRoot, { recursive: true, force: true })
  }
})

describe("provision plan: a pilot group's enrolment against the policy's pilot grant", () => {
  it('allows the count and lifetime that are exactly the maxima', async () => {
    const { code, enrolment } = await planSteps(strict, inputs(strict, 'fits', 'pilot_nodes: 2\npilot_walltime: 7200\n'))
    expect(code).toBe(0)
    expect(enrolment).toMatchObject({ answer: 'allow', rule: 'hybrid-provisioner', pilot_count: 8, lifetime: 32400 })
    expect(enrolment.granted_lifetime).toBeUndefined()
  }, 60_000)

  it('refuses a count above max_count, naming the values that make it', async () => {
    const { code, enrolment } = await planSteps(strict, inputs(strict, 'many', 'pilot_nodes: 3\n'))
    expect(code).toBe(1)
    expect(enrolment).toMatchObject({ answer: 'deny', rule: 'hybrid-provisioner', pilot_count: 12, lifetime: 32400 })
    expect(enrolment.reason).toMatch(/pilot_count 12 \(nodes 3 × \(max_requeues 2 \+ 2\)\) exceeds the policy's pilot\.max_count 8/)
    expect(enrolment.reason).toMatch(/lower nodes or max_requeues, or raise max_count/)
    expect(await issuedCount(strict)).toBe(0)
  }, 60_000)

  it('refuses a lifetime above enrolment_lifetime.max without up_to, naming the values that make it', async () => {
    const { code, enrolment } = await planSteps(strict, inputs(strict, 'long', 'pilot_nodes: 2\npilot_walltime: 10800\n'))
    expect(code).toBe(1)
    expect(enrolment).toMatchObject({ answer: 'deny', pilot_count: 8, lifetime: 43200 })
    expect(enrolment.reason).toMatch(/lifetime 43200s \(\(max_requeues 2 \+ 1\) × \(queue_estimate_s 3600 \+ walltime_s 10800\)\) exceeds the policy's pilot\.enrolment_lifetime\.max 32400s/)
    expect(enrolment.reason).toMatch(/lower max_requeues, walltime_s or queue_estimate_s, or raise enrolment_lifetime\.max/)
  }, 60_000)

  it('warns when the group keeps its credential for more requeues than the grant lets runs redeem', async () => {
    // The example policy leaves pilot.max_restarts at its documented default, 2; this group keeps 3 requeues.
    // 1 node × (3 + 2) = 5 slots and (3 + 1) × (3600 + 3600) = 28800 s: within both maxima, so allowed.
    const template = join(strict.root, 'requeues-template.yaml')
    const text = readFileSync(EXAMPLE, 'utf8')
    const edited = text.replace('walltime_s: { get_input: pilot_walltime }', 'walltime_s: { get_input: pilot_walltime }\n        max_requeues: 3')
    if (edited === text) throw new Error('the example template changed shape; adjust this test')
    writeFileSync(template, edited)
    const r = await cli(strict, ['provision', 'plan', template, '--inputs', inputs(strict, 'requeues', 'pilot_nodes: 1\npilot_walltime: 3600\n'), '--json'])
    expect(r.err).toBe('')
    const enrolment = (JSON.parse(r.out) as { steps: Step[] }).steps.find((x) => x.node === 'hpc' && x.request === 'pilot enrolment')!
    expect(enrolment).toMatchObject({ answer: 'allow', pilot_count: 5, lifetime: 28800 })
    expect(enrolment.reason).toBe("max_requeues 3 is above the policy's pilot.max_restarts 2 (rule hybrid-provisioner): runs after restart 2 will be refused; lower max_requeues or raise max_restarts")
  }, 60_000)

  it('refuses, as a step naming the values, a count above what any enrolment may carry (100000)', async () => {
    // 1000 nodes and 100 requeues are each within what the sbatch pilot takes, yet ask for 1000 × (100 + 2) =
    // 102000 pilot tokens: more than the broker's MAX_PILOT_COUNT 100000 (docs/pilots.md), whatever the policy.
    const template = join(strict.root, 'huge-template.yaml')
    const text = readFileSync(EXAMPLE, 'utf8')
    const edited = text.replace('nodes: { get_input: pilot_nodes }', 'nodes: 1000')
      .replace('walltime_s: { get_input: pilot_walltime }', 'walltime_s: { get_input: pilot_walltime }\n        max_requeues: 100')
    if (!edited.includes('nodes: 1000') || !edited.includes('max_requeues: 100')) throw new Error('the example template changed shape; adjust this test')
    writeFileSync(template, edited)
    const r = await cli(strict, ['provision', 'plan', template, '--inputs', inputs(strict, 'huge', ''), '--json'])
    expect(r.err).toBe('')
    expect(r.code).toBe(1)
    const enrolment = (JSON.parse(r.out) as { steps: Step[] }).steps.find((x) => x.node === 'hpc' && x.request === 'pilot enrolment')!
    expect(enrolment).toMatchObject({ answer: 'deny', pilot_count: 102000 })
    expect(enrolment.reason).toMatch(/^pilot_count 102000 \(nodes 1000 × \(max_requeues 100 \+ 2\)\) exceeds 100000, the most any pilot enrolment may carry: lower nodes or max_requeues$/)
  }, 60_000)

  it('says the lifetime is trimmed where the grant has up_to', async () => {
    const { code, enrolment } = await planSteps(trimming, inputs(trimming, 'long', 'pilot_nodes: 2\npilot_walltime: 10800\n'))
    expect(code).toBe(0)
    expect(enrolment).toMatchObject({ answer: 'allow', pilot_count: 8, lifetime: 43200, granted_lifetime: 32400 })
    expect(enrolment.reason).toMatch(/trimmed to 32400s/)
  }, 60_000)
})

describe('provision render: an enrolment the policy refuses mints nothing', () => {
  it.each([
    ['a count above max_count', 'many-render', 'pilot_nodes: 3\n', /pilot_count 12 .*max_count 8/],
    ['a lifetime above enrolment_lifetime.max', 'long-render', 'pilot_nodes: 2\npilot_walltime: 10800\n', /lifetime 43200s .*enrolment_lifetime\.max 32400s/],
  ])('refuses %s before any token or certificate is issued', async (_, name, more, message) => {
    const before = await issuedCount(strict)
    const out = join(strict.root, `${name}-out`)
    const r = await cli(strict, ['provision', 'render', EXAMPLE, '--inputs', inputs(strict, name, more), '--out', out])
    expect(r.code).toBe(1)
    expect(r.err.split('\n')).toHaveLength(1)
    expect(r.err).toMatch(message)
    expect(r.err).not.toMatch(/revoked/)
    expect(await issuedCount(strict)).toBe(before)
    expect(existsSync(out)).toBe(false)
  }, 60_000)

  // With two groups, the first's enrolment is issued before the broker refuses the second's: it must be in
  // what render revokes again, and the refusal still names the group and what to change.
  it("revokes an earlier group's enrolment when a later group's is refused", async () => {
    const template = join(strict.root, 'two-groups-template.yaml')
    const text = readFileSync(EXAMPLE, 'utf8')
    const hpc = /\n {4}hpc:\n[\s\S]*?requirements: \[ \{ collector: cm \} \]\n/.exec(text)
    if (!hpc) throw new Error('the example template changed shape; adjust this test')
    // hpc2: 3 nodes × (2 + 2) = 12 > max_count 8, refused; hpc (2 nodes, 8) fits.
    const second = hpc[0].replace('\n    hpc:\n', '\n    hpc2:\n').replace('nodes: { get_input: pilot_nodes }', 'nodes: 3')
    writeFileSync(template, text.replace(hpc[0], hpc[0] + second.slice(1)))
    const before = await issuedCount(strict)
    const out = join(strict.root, 'two-groups-out')
    const r = await cli(strict, ['provision', 'render', template, '--inputs', inputs(strict, 'two-groups', 'pilot_nodes: 2\npilot_walltime: 7200\n'), '--out', out])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/hpc2: the broker refuses the pilot enrolment: pilot_count 12 .*max_count 8/)
    expect(r.err).toMatch(/issued 1 tokens and 0 certificates; revoked 1$/m)
    expect(await issuedCount(strict)).toBe(before + 1)
    const admin = { authorization: `Bearer ${readFileSync(strict.env.BEARER_TOKEN_FILE!, 'utf8').trim()}` }
    const issued = ((await strict.e2e.get('/v1/audit?type=token.issued&limit=1', admin)).body.records as Array<{ event: { jti: string; tokenKind: string } }>)[0]!.event
    expect(issued.tokenKind).toBe('pilot_enrolment')
    const revoked = (await strict.e2e.get('/v1/revocations', admin)).body as unknown
    expect(JSON.stringify(revoked)).toContain(issued.jti)
    expect(existsSync(out)).toBe(false)
  }, 60_000)
})
