import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jwtVerify } from 'jose'
import { parse } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initPoolCa } from '../../src/ca/pool_ca.ts'
import { runCli } from '../../src/cli/main.ts'
import { deriveIdTokenKey } from '../../src/keys/condor_key_file.ts'
import { startE2e, claimsOf, type E2e } from '../support/broker_e2e.ts'

// The example template rendered against a real broker and the development IAM on loopback, driven
// through the CLI as an operator would; then torn down.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const TD = 'pool.example.org'

function openssl(args: string[]): { status: number; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' })
  if (r.error) throw new Error('this test needs the openssl CLI (Debian package openssl)')
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` }
}

let e2e: E2e
let root: string
let env: NodeJS.ProcessEnv
let inputs: string
let caRoot: string

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(args, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

beforeAll(async () => {
  caRoot = mkdtempSync(join(tmpdir(), 'ctb-provision-ca-'))
  const caDir = join(caRoot, 'ca')
  await initPoolCa(caDir, { name: 'test pool CA', now: Math.floor(Date.now() / 1000) })
  e2e = await startE2e({ CTB_POLICY_DIR: 'examples/provisioning/policies', CTB_CA_DIR: caDir, CTB_TRUST_DOMAIN: TD })
  root = join(e2e.dir, 'work')
  mkdirSync(root)
  const tokenFile = join(root, 'bt')
  writeFileSync(tokenFile, `${await e2e.robot('provisioner')}\n`, { mode: 0o600 })
  writeFileSync(join(root, 'ca.pem'), e2e.ca)
  inputs = join(root, 'inputs.yaml')
  writeFileSync(inputs, `trust_domain: ${TD}\niam_issuer: ${e2e.devIam.issuer}\nstartd_count: 2\npilot_nodes: 2\n`)
  env = { BEARER_TOKEN_FILE: tokenFile }
}, 60_000)

afterAll(async () => {
  await e2e?.close()
  if (caRoot) rmSync(caRoot, { recursive: true, force: true })
})

const base = () => ['--broker', e2e.broker.url, '--ca-file', join(root, 'ca.pem')]

describe('provision render, plan and teardown against the broker', () => {
  it('plans without minting: every request allowed, identities named', async () => {
    const r = await cli(['provision', 'plan', EXAMPLE, '--inputs', inputs, ...base(), '--json'])
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    const steps = (JSON.parse(r.out) as { steps: Array<{ node: string; answer: string; identity?: string; request: string }> }).steps
    expect(steps.filter((s) => s.request === 'IDTOKEN').map((s) => s.identity)).toEqual([
      `condor@${TD}`, `schedd-ap1@aps.${TD}`, `startd-cloud-a-ep-1@eps.${TD}`, `startd-cloud-a-ep-2@eps.${TD}`,
    ])
    expect(steps.filter((s) => s.request.startsWith('host certificate')).map((s) => `${s.node}:${s.answer}`)).toEqual(['cm:allow', 'ap:allow', 'workers:allow', 'workers:allow'])
    expect(steps.every((s) => s.answer === 'allow')).toBe(true)
    const admin = { authorization: `Bearer ${readFileSync(env.BEARER_TOKEN_FILE!, 'utf8').trim()}` }
    expect((await e2e.get('/v1/audit?type=token.issued&limit=100', admin)).body.records).toEqual([])
    expect((await e2e.get('/v1/audit?type=certificate.issued&limit=100', admin)).body.records).toEqual([])
  })

  it('renders bundles whose tokens, ALLOW lists, certificates and cloud-init agree with what the broker issued', async () => {
    const out = join(root, 'out')
    const r = await cli(['provision', 'render', EXAMPLE, '--inputs', inputs, ...base(), '--out', out])
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as {
      bundles: string[]; tokens: Array<{ jti: string; sub: string; role: string; node: string; kind: string; exp: number }>; certificates: Array<{ serial: string; host: string; node: string }>
    }
    expect(manifest.bundles.sort()).toEqual(['ap', 'cm', 'hpc', 'workers-1', 'workers-2'])
    // Pilot enrolments are asked for first (docs/provisioning.md), then the daemons in dependency order.
    expect(manifest.tokens.map((t) => `${t.node}:${t.role}:${t.kind}`)).toEqual([
      'hpc:pilot:pilot_enrolment', 'cm:central-manager:idtoken', 'ap:schedd:idtoken', 'workers:startd:idtoken', 'workers:startd:idtoken',
    ])
    expect(manifest.certificates.map((c) => c.host)).toEqual(['cm.cloud-a.example.org', 'ap1.cloud-a.example.org', 'ep-1.cloud-a.example.org', 'ep-2.cloud-a.example.org'])

    // Each daemon token verifies with the pool key and is the one the manifest names.
    const key = deriveIdTokenKey(readFileSync(join(e2e.dir, 'data', 'keys', 'condor', 'broker1')), 'broker1')
    const tokenFiles: Record<string, string> = { cm: 'NEGOTIATOR', ap: 'SCHEDD', 'workers-1': 'STARTD', 'workers-2': 'STARTD' }
    const subs: Record<string, string> = {}
    for (const [bundle, subsys] of Object.entries(tokenFiles)) {
      const file = join(out, bundle, 'tokens.d', `${subsys}_auto_generated_token`)
      expect(statSync(file).mode & 0o777).toBe(0o600)
      const token = readFileSync(file, 'utf8').trim()
      const { payload } = await jwtVerify(token, key, { issuer: TD, algorithms: ['HS256'] })
      expect(manifest.tokens.some((t) => t.jti === payload.jti && t.sub === payload.sub && t.exp === payload.exp)).toBe(true)
      subs[bundle] = String(payload.sub)
      // The pool CA certificate is in every bundle; the host certificate verifies against it.
      const ca = join(out, bundle, 'certs', 'pool-ca.crt')
      expect(openssl(['verify', '-CAfile', ca, '-purpose', 'sslserver', join(out, bundle, 'certs', 'host.crt')]).out).toMatch(/: OK/)
      expect(statSync(join(out, bundle, 'certs', 'host.key')).mode & 0o777).toBe(0o600)
      const conf = readFileSync(join(out, bundle, 'condor_config.d', '50-broker.conf'), 'utf8')
      expect(conf).not.toMatch(/GSI|X509|PROXY/i)
      expect(conf).toMatch(/^SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS, SCITOKENS, SSL$/m)
      expect(conf).toMatch(new RegExp(`^TRUST_DOMAIN = ${TD}$`, 'm'))
      checkCloudInit(join(out, bundle))
    }
    expect(readFileSync(join(out, 'hpc', 'pool-ca.crt'), 'utf8')).toBe(readFileSync(join(out, 'cm', 'certs', 'pool-ca.crt'), 'utf8'))

    // The collector's ALLOW lists name exactly the identities issued, and the pilot group by its head: the site and
    // this render's enrolment credential (its jti, as the manifest records it), so no other cluster's pilots match.
    const enrolment = manifest.tokens.find((t) => t.kind === 'pilot_enrolment')!.jti
    const pilotEntry = `pilot+hpc-b+${enrolment}+*@pilots.${TD}`
    const cm = readFileSync(join(out, 'cm', 'condor_config.d', '50-broker.conf'), 'utf8')
    const allow = (name: string) => new Set(cm.match(new RegExp(`^${name} = (.*)$`, 'm'))![1]!.split(', '))
    expect(allow('ALLOW_ADVERTISE_STARTD')).toEqual(new Set([subs['workers-1'], subs['workers-2'], pilotEntry]))
    expect(allow('ALLOW_ADVERTISE_SCHEDD')).toEqual(new Set([subs.ap]))
    expect(allow('ALLOW_ADVERTISE_MASTER')).toEqual(new Set([subs.cm, subs.ap, subs['workers-1'], subs['workers-2'], pilotEntry]))
    expect(allow('ALLOW_NEGOTIATOR')).toEqual(new Set([`condor@${TD}`]))
    expect(readFileSync(join(out, 'workers-1', 'condor_config.d', '50-broker.conf'), 'utf8')).toMatch(/^CCB_ADDRESS = \$\(COLLECTOR_HOST\)$/m)

    // The schedd maps SciTokens of the IAM issuer to users' identities.
    const issuerRe = e2e.devIam.issuer.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\//g, '\\/')
    expect(readFileSync(join(out, 'ap', 'certs', 'condor_mapfile'), 'utf8')).toContain(`SCITOKENS /^${issuerRe},(.*)$/ \\1@users.hybrid`)

    // The pilot group: the sbatch script from the pilot renderer, and its enrolment credential (0600).
    const sbatch = readFileSync(join(out, 'hpc', 'pilot.sbatch'), 'utf8')
    expect(sbatch).toMatch(/^#SBATCH -J htc-pilot-hpc-b$/m)
    expect(sbatch).toMatch(/^#SBATCH --nodes=2$/m)
    expect(sbatch).toContain(e2e.broker.url)
    expect(statSync(join(out, 'hpc', 'enrolment.cred')).mode & 0o777).toBe(0o600)
    expect(claimsOf(readFileSync(join(out, 'hpc', 'enrolment.cred'), 'utf8').trim()).jti).toBe(manifest.tokens.find((t) => t.kind === 'pilot_enrolment')!.jti)

    // Teardown: every token revoked in the HTCondor expression, every certificate in the CRL.
    const td = await cli(['provision', 'teardown', '--manifest', join(out, 'manifest.json'), ...base()])
    expect(td.err).toBe('')
    expect(td.out).toBe('revoked 5 tokens and 4 certificates')
    const bearer = readFileSync(env.BEARER_TOKEN_FILE!, 'utf8').trim()
    const expr = String((await e2e.get('/v1/revocations/condor?format=json', { authorization: `Bearer ${bearer}` })).body.expr)
    for (const t of manifest.tokens.filter((x) => x.kind === 'idtoken')) expect(expr).toContain(`jti =?= "${t.jti}"`)
    // The pilot group by its enrolment: the clause its running pilots' tokens (ctb_enrolment) match at the collector.
    const enrolments = manifest.tokens.filter((x) => x.kind === 'pilot_enrolment').map((t) => t.jti)
    expect(enrolments).toHaveLength(1)
    expect(expr).toContain(`ctb_enrolment =?= "${enrolments[0]}"`)
    const revoked = (await e2e.get('/v1/revocations', { authorization: `Bearer ${bearer}` })).body.revocations as Array<{ kind: string; value: string }>
    expect(revoked.filter((x) => x.kind === 'jti').map((x) => x.value).sort()).toEqual(manifest.tokens.filter((t) => t.kind === 'idtoken').map((t) => t.jti).sort())
    expect(revoked.filter((x) => x.kind === 'pilot-enrolment').map((x) => x.value)).toEqual(enrolments)
    const crl = join(root, 'crl.pem')
    writeFileSync(crl, await fetchText(`${e2e.broker.url}/v1/ca/crl`))
    const crlText = openssl(['crl', '-in', crl, '-noout', '-text']).out
    for (const c of manifest.certificates) expect(crlText).toContain(`Serial Number: ${c.serial.toUpperCase()}`)
  }, 60_000)

  it('renders the same structure with fresh tokens when run again, and refuses an existing --out before minting', async () => {
    /** Every file under `dir` with its mode, relative paths sorted. */
    const tree = (dir: string): string[] => (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
      .filter((d) => d.isFile())
      .map((d) => { const f = join(d.parentPath, d.name); return `${f.slice(dir.length + 1)} ${(statSync(f).mode & 0o777).toString(8)}` })
      .sort()
    const jtis = (dir: string): string[] => (JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { tokens: Array<{ jti: string }> }).tokens.map((t) => t.jti)
    const [a, b] = [join(root, 'again-a'), join(root, 'again-b')]
    for (const out of [a, b]) {
      const r = await cli(['provision', 'render', EXAMPLE, '--inputs', inputs, ...base(), '--out', out])
      expect(r.err).toBe('')
      expect(r.code).toBe(0)
    }
    expect(tree(b)).toEqual(tree(a))
    expect(jtis(b)).toHaveLength(jtis(a).length)
    expect(jtis(b).filter((j) => jtis(a).includes(j))).toEqual([])

    const admin = { authorization: `Bearer ${readFileSync(env.BEARER_TOKEN_FILE!, 'utf8').trim()}` }
    const issued = async () => ((await e2e.get('/v1/audit?type=token.issued&limit=1000', admin)).body.records as unknown[]).length
    const before = await issued()
    const again = await cli(['provision', 'render', EXAMPLE, '--inputs', inputs, ...base(), '--out', a])
    expect(again.code).toBe(1)
    expect(again.err).toMatch(/again-a exists; choose a new --out directory/)
    expect(await issued()).toBe(before)
  }, 90_000)

  it('gives each rendered cluster a collector that admits its own pilots and not another cluster\'s at the same site', async () => {
    // Two clusters from one template, both with a pilot group at site hpc-b. A pilot of X redeems X's
    // enrolment.cred as the sbatch pilot would; HTCondor then matches its identity against each collector's
    // ALLOW_ADVERTISE_STARTD. The match is HTCondor's as documented (one `*` for any run of characters, no case),
    // written here, not taken from the code.
    const admits = (entry: string, id: string) => {
      const [head, tail] = entry.toLowerCase().split('*') as [string, string | undefined]
      const l = id.toLowerCase()
      return tail === undefined ? head === l : l.length >= head.length + tail.length && l.startsWith(head) && l.endsWith(tail)
    }
    const [x, y] = [join(root, 'cluster-x'), join(root, 'cluster-y')]
    for (const out of [x, y]) expect((await cli(['provision', 'render', EXAMPLE, '--inputs', inputs, ...base(), '--out', out])).code).toBe(0)
    const startdAllow = (dir: string) => readFileSync(join(dir, 'cm', 'condor_config.d', '50-broker.conf'), 'utf8').match(/^ALLOW_ADVERTISE_STARTD = (.*)$/m)![1]!.split(', ')
    const credential = readFileSync(join(x, 'hpc', 'enrolment.cred'), 'utf8').trim()
    const r = await e2e.post('/token', {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: credential,
      subject_token_type: 'urn:condor-token-broker:token-type:pilot-enrolment', slurm_job_id: '4242', node: 'ctbn1', job_end: String(Math.floor(Date.now() / 1000) + 600),
    })
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    const sub = String(claimsOf(r.body.access_token as string).sub)
    expect(startdAllow(x).some((e) => admits(e, sub)), `${startdAllow(x).join(', ')} vs ${sub}`).toBe(true)
    expect(startdAllow(y).filter((e) => admits(e, sub)), `cluster y admits ${sub}`).toEqual([])
  }, 90_000)

  it('leaves no output and revokes what it got when the policy refuses a later node', async () => {
    const text = readFileSync(EXAMPLE, 'utf8').replace('"ep-{n}.", { get_input: cloud_domain }', '"ep-{n}.elsewhere.example.net"')
    const template = join(root, 'denied.yaml')
    writeFileSync(template, text)
    const out = join(root, 'denied-out')
    const r = await cli(['provision', 'render', template, '--inputs', inputs, ...base(), '--out', out])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/token for role startd on ep-1\.elsewhere\.example\.net: 400 unauthorized_client/)
    // The pilot group's enrolment (asked for first), cm's and ap's tokens and certificates.
    expect(r.err).toMatch(/issued 3 tokens and 2 certificates; revoked 5/)
    expect(existsSync(out)).toBe(false)
    expect(readdirSync(root).filter((n) => n.includes('tmp'))).toEqual([])
  }, 60_000)

  it('refuses, revoking nothing, a manifest edited to list what this render was not issued', async () => {
    const out = join(root, 'edited')
    expect((await cli(['provision', 'render', EXAMPLE, '--inputs', inputs, ...base(), '--out', out])).code).toBe(0)
    const original = readFileSync(join(out, 'manifest.json'), 'utf8')
    const bearer = readFileSync(env.BEARER_TOKEN_FILE!, 'utf8').trim()
    const revocations = async () => ((await e2e.get('/v1/revocations', { authorization: `Bearer ${bearer}` })).body.revocations as unknown[]).length
    const before = await revocations()
    type M = { tokens: Array<{ jti: string; sub: string; node: string }>; certificates: Array<{ serial: string; host: string; node: string }> }
    const edits: Array<[string, (m: M) => void, RegExp]> = [
      // A jti the broker never issued (or another one's, typed in): the broker records a revocation of any jti.
      ['an unknown jti', (m) => { m.tokens[1]!.jti = 'f'.repeat(32) }, new RegExp(`token ${'f'.repeat(32)} \\(cm\\): the broker has no record of issuing it`)],
      // The ap's token passed off as the cm's: its record names another sub.
      ['a token under another entry', (m) => { m.tokens[1]!.jti = m.tokens[2]!.jti; m.tokens[2]!.jti = 'e'.repeat(32) }, /\(cm\): the broker issued it to sub schedd-ap1@/],
      ['a serial for another host', (m) => { m.certificates[0]!.serial = m.certificates[1]!.serial }, /certificate [0-9a-f]+ \(cm\): the broker has no record of issuing it for cm\.cloud-a\.example\.org/],
    ]
    for (const [what, edit, says] of edits) {
      const m = JSON.parse(original) as M
      edit(m)
      const file = join(root, 'edited.json')
      writeFileSync(file, JSON.stringify(m))
      const td = await cli(['provision', 'teardown', '--manifest', file, ...base()])
      expect(td.code, what).toBe(1)
      expect(td.err, what).toMatch(says)
      expect(td.err, what).toMatch(/nothing was revoked/)
      expect(td.out, what).toBe('')
      expect(await revocations(), what).toBe(before)
    }
    // The manifest as render wrote it still tears down.
    const td = await cli(['provision', 'teardown', '--manifest', join(out, 'manifest.json'), ...base()])
    expect(td.err).toBe('')
    expect(td.out).toBe('revoked 5 tokens and 4 certificates')
  }, 90_000)

  it('revokes what it was issued and writes nothing when stopped by SIGINT midway', async () => {
    const many = join(root, 'many-inputs.yaml')
    writeFileSync(many, `trust_domain: ${TD}\niam_issuer: ${e2e.devIam.issuer}\nstartd_count: 50\npilot_nodes: 2\n`)
    const out = join(root, 'interrupted')
    const bearer = readFileSync(env.BEARER_TOKEN_FILE!, 'utf8').trim()
    const admin = { authorization: `Bearer ${bearer}` }
    const issuedJtis = async () => ((await e2e.get('/v1/audit?type=token.issued&limit=1000', admin)).body.records as Array<{ event: { jti: string } }>).map((r) => r.event.jti)
    const serials = async (type: string) => ((await e2e.get(`/v1/audit?type=${type}&limit=1000`, admin)).body.records as Array<{ event: { detail: { serial: string } } }>).map((r) => r.event.detail.serial)
    const before = new Set(await issuedJtis())
    const certsBefore = new Set(await serials('certificate.issued'))
    // The real process, so the signal is a real one: render of 50 startds takes long enough to be stopped in it.
    const child = spawn(process.execPath, ['src/cli/main.ts', 'provision', 'render', EXAMPLE, '--inputs', many, ...base(), '--out', out],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr!.setEncoding('utf8').on('data', (c: string) => { err += c })
    const exit = new Promise<number | string | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)))
    try {
      for (let i = 0; (await issuedJtis()).length - before.size < 2; i++) {
        if (i > 500) throw new Error('render issued nothing')
        await new Promise((r) => setTimeout(r, 10))
      }
      child.kill('SIGINT')
      expect(await exit).toBe(130)
    } finally {
      child.kill('SIGKILL')
    }
    const issued = (await issuedJtis()).filter((j) => !before.has(j))
    expect(issued.length).toBeLessThan(51 + 2)
    const revoked = new Set(((await e2e.get('/v1/revocations', admin)).body.revocations as Array<{ kind: string; value: string }>).filter((r) => r.kind === 'jti' || r.kind === 'pilot-enrolment').map((r) => r.value))
    // Daemon tokens by jti, the pilot group's credential as a pilot enrolment (teardown.ts).
    expect(issued.filter((j) => !revoked.has(j))).toEqual([])
    const certs = (await serials('certificate.issued')).filter((x) => !certsBefore.has(x))
    const certsRevoked = new Set(await serials('certificate.revoked'))
    expect(certs.filter((x) => !certsRevoked.has(x))).toEqual([])
    expect(err).toContain(`render failed after the broker issued ${issued.length} tokens and ${certs.length} certificates; revoked ${issued.length + certs.length}\n`)
    expect(err).toMatch(/condor-token-broker: render stopped by SIGINT\n$/)
    expect(existsSync(out)).toBe(false)
    expect(readdirSync(root).filter((n) => n.includes('tmp'))).toEqual([])
  }, 90_000)

  it('refuses a secret in the inputs before asking the broker for anything', async () => {
    const bad = join(root, 'bad-inputs.yaml')
    writeFileSync(bad, `trust_domain: ${TD}\niam_issuer: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"\n`)
    const r = await cli(['provision', 'render', EXAMPLE, '--inputs', bad, ...base(), '--out', join(root, 'never')])
    expect(r.code).toBe(1)
    expect(r.err).toBe(`condor-token-broker: ${bad}: input "iam_issuer" looks like a JWT (a token); templates carry no secrets (the broker puts credentials into bundles)`)
  })

  it("writes the SLURM site's settings from the inputs into the group's sbatch script", async () => {
    const site = join(root, 'site-inputs.yaml')
    writeFileSync(site, `trust_domain: ${TD}\niam_issuer: ${e2e.devIam.issuer}\npilot_nodes: 1\npilot_partition: short\npilot_cpus: 2\npilot_mem_mb: 4000\n`
      + 'pilot_walltime: 1800\npilot_drain_margin: 120\npilot_dir: /work/htc\npilot_command: /opt/condor/sbin/condor_master -f\n')
    const out = join(root, 'site-out')
    const r = await cli(['provision', 'render', EXAMPLE, '--inputs', site, ...base(), '--out', out])
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    const script = readFileSync(join(out, 'hpc', 'pilot.sbatch'), 'utf8')
    for (const line of ['#SBATCH -p short', '#SBATCH --nodes=1', '#SBATCH --cpus-per-task=2', '#SBATCH --mem=4000', '#SBATCH -t 30',
      '#SBATCH -o /work/htc/logs/pilot-%j.out', '#SBATCH --signal=B:USR1@120', "readonly CA_FILE='/work/htc/broker-ca.crt'",
      "readonly ENROLMENT_FILE='/work/htc/enrolment.cred'", "readonly COMMAND=('/opt/condor/sbin/condor_master' '-f')"]) {
      expect(script.split('\n')).toContain(line)
    }
  }, 60_000)

  it("refuses a pilot property the sbatch script would refuse, at the property's line, before anything is issued", async () => {
    const bad = join(root, 'bad-command.yaml')
    writeFileSync(bad, `trust_domain: ${TD}\niam_issuer: ${e2e.devIam.issuer}\npilot_command: "condor_master -f;reboot"\n`)
    const line = readFileSync(EXAMPLE, 'utf8').split('\n').findIndex((l) => /^ +command: /.test(l)) + 1
    const admin = { authorization: `Bearer ${readFileSync(env.BEARER_TOKEN_FILE!, 'utf8').trim()}` }
    const issued = async () => ((await e2e.get('/v1/audit?type=token.issued&limit=1000', admin)).body.records as unknown[]).length
    const before = await issued()
    const r = await cli(['provision', 'render', EXAMPLE, '--inputs', bad, ...base(), '--out', join(root, 'bad-out')])
    expect(r.code).toBe(1)
    expect(r.err).toBe(`condor-token-broker: ${EXAMPLE}:${line}:18: hpc.command ("condor_master -f;reboot") must be words of letters, digits and _ . / = : , + - separated by single spaces`)
    // Checked for every node before the first request: the daemons realised before the group got nothing.
    expect(await issued()).toBe(before)
    expect(existsSync(join(root, 'bad-out'))).toBe(false)
    const plan = await cli(['provision', 'plan', EXAMPLE, '--inputs', bad, ...base()])
    expect(plan.code).toBe(1)
    expect(plan.err).toContain(`${EXAMPLE}:${line}:18: hpc.command`)
  }, 60_000)

  it('plan refuses a trust domain that is not the broker\'s, at its line, as render would after the first token', async () => {
    // Policy explain names the trust domain an IDTOKEN's iss will carry; plan compares it with the template's.
    const other = join(root, 'other-td.yaml')
    writeFileSync(other, `trust_domain: other.${TD}\niam_issuer: ${e2e.devIam.issuer}\n`)
    const plan = await cli(['provision', 'plan', EXAMPLE, '--inputs', other, ...base()])
    expect(plan.code).toBe(1)
    expect(plan.err).toContain(`cm.trust_domain ("other.${TD}") is not the broker's trust domain: its tokens carry iss "${TD}"`)
  }, 60_000)

  // Last: it revokes the operator.
  it('refuses a certificate to a caller whose IAM subject is revoked', async () => {
    const bearer = readFileSync(env.BEARER_TOKEN_FILE!, 'utf8').trim()
    const csr = '-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----\n'
    const before = await e2e.postJson('/v1/certificates', { csr, role: 'schedd', dns: ['ap1.cloud-a.example.org'] }, { authorization: `Bearer ${bearer}` })
    expect(before.body).toEqual({ error: 'invalid_request', error_description: 'csr is not a PEM PKCS#10 certificate request' })
    const rev = await e2e.postJson('/v1/revocations', { sub: 'provisioner', reason: 'operator left' }, { authorization: `Bearer ${bearer}` })
    expect(rev.status).toBe(201)
    const after = await e2e.postJson('/v1/certificates', { csr, role: 'schedd', dns: ['ap1.cloud-a.example.org'] }, { authorization: `Bearer ${bearer}` })
    expect(after.status).toBe(401)
    expect(after.body).toEqual({ error: 'invalid_token', error_description: 'the token has been revoked' })
  })
})

async function fetchText(url: string): Promise<string> {
  const { request } = await import('node:https')
  return new Promise((resolve, reject) => {
    request(url, { ca: e2e.ca }, (res) => { let t = ''; res.setEncoding('utf8'); res.on('data', (c) => { t += c }); res.on('end', () => resolve(t)) }).on('error', reject).end()
  })
}

/** user-data is valid cloud-config YAML that writes exactly the bundle's files, with the same modes. */
function checkCloudInit(bundle: string): void {
  const text = readFileSync(join(bundle, 'user-data'), 'utf8')
  expect(text.startsWith('#cloud-config\n')).toBe(true)
  const doc = parse(text) as { write_files: Array<{ path: string; permissions: string; encoding: string; content: string }>; runcmd: string[][] }
  const local: Record<string, string> = {
    '/etc/condor/config.d/50-broker.conf': 'condor_config.d/50-broker.conf', '/etc/condor/certs/pool-ca.crt': 'certs/pool-ca.crt',
    '/etc/condor/certs/host.crt': 'certs/host.crt', '/etc/condor/certs/host.key': 'certs/host.key',
  }
  for (const f of doc.write_files) {
    const rel = local[f.path] ?? (f.path.startsWith('/etc/condor/tokens.d/') ? `tokens.d/${f.path.split('/').pop()}` : f.path === '/etc/condor/certs/condor_mapfile' ? 'certs/condor_mapfile' : undefined)
    expect(rel, f.path).toBeDefined()
    expect(Buffer.from(f.content, 'base64').toString('utf8')).toBe(readFileSync(join(bundle, rel!), 'utf8'))
    expect(f.permissions).toBe(`0${(statSync(join(bundle, rel!)).mode & 0o777).toString(8)}`)
  }
  expect(doc.write_files.length).toBe(readdirSync(bundle, { recursive: true }).filter((n) => statSync(join(bundle, String(n))).isFile() && n !== 'user-data').length)
  expect(doc.runcmd.at(-1)).toEqual(['systemctl', 'enable', '--now', 'condor'])
}
