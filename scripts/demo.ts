// npm run demo: the broker as a new user meets it, in well under a minute. Starts the broker and the
// development IAM on loopback (temporary data directory), then walks through token exchanges.
import { request } from 'node:https'
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { initPoolCa } from '../src/ca/pool_ca.ts'
import { runCli } from '../src/cli/main.ts'
import { loadConfig } from '../src/config.ts'
import { devIamTokenRequest, devIamUserToken } from '../src/dev_iam/dev_iam_token.ts'
import { silentLogger } from '../src/lib/logger.ts'
import { startBroker } from '../src/server.ts'

const TE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const AT = 'urn:ietf:params:oauth:token-type:access_token'
const started = performance.now()
const dir = mkdtempSync(join(tmpdir(), 'ctb-demo-'))
// The directory holds signing keys and a CA key: remove it however the demo ends. `finally` below does on
// success and on errors; a reader that goes away (`npm run demo | head`) or Ctrl-C would skip it.
process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
process.stdout.on('error', () => process.exit(0))
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1)))
// The shipped policies plus the provisioning example's operator rule, and a pool CA for host certificates.
const policyDir = join(dir, 'policies')
cpSync('policies', policyDir, { recursive: true })
cpSync('examples/provisioning/policies', policyDir, { recursive: true })
await initPoolCa(join(dir, 'data', 'ca'), { name: 'pool.example.org demo pool CA', now: Math.floor(Date.now() / 1000) })
const env = { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0', CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false', CTB_POLICY_DIR: policyDir }
const broker = await startBroker(loadConfig({ env }), { log: silentLogger })
const iam = broker.services.devIam!
const ca = readFileSync(broker.devCaFile!)

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s)
const step = (n: number, s: string) => console.log(`\n${bold(`${n}. ${s}`)}`)
const claims = (t: string) => JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>

function call(method: string, path: string, body: string, headers: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${broker.url}${path}`, { method, ca, headers, timeout: 10_000 }, (res) => {
      let text = ''
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function exchange(subjectToken: string, form: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const body = new URLSearchParams({ grant_type: TE, subject_token: subjectToken, subject_token_type: AT, ...form }).toString()
  const shown = Object.entries(form).map(([k, v]) => `${k}=${v}`).join(' ')
  console.log(`   POST ${broker.url}/token  grant_type=token-exchange subject_token=<IAM token> ${shown}`)
  const res = await call('POST', '/token', body, { 'content-type': 'application/x-www-form-urlencoded' })
  const { access_token: _t, ...rest } = res.body
  console.log(`   -> ${res.status} ${JSON.stringify(rest)}`)
  return res
}

async function inspect(token: string): Promise<void> {
  const lines: string[] = []
  await runCli(['token', 'inspect', token], { out: (s) => lines.push(s), err: (s) => lines.push(s), env })
  console.log(lines.map((l) => `   | ${l}`).join('\n'))
}

async function robotToken(clientId: string): Promise<string> {
  const r = await devIamTokenRequest(iam, clientId, { grant_type: 'client_credentials', scope: 'wlcg' })
  return r.body.access_token as string
}

try {
  console.log(bold('condor-token-broker demo'))
  console.log(`broker ${broker.url} (issuer ${broker.services.config.issuer}, trust domain pool.example.org)`)
  console.log(`DEVELOPMENT IAM ${iam.issuer} (policies: ${broker.services.config.policy_dir}/)`)

  step(1, 'Alice logs in to the (development) IAM and gets a WLCG-profile access token')
  const alice = (await devIamUserToken(iam, 'alice', { scope: 'openid profile wlcg wlcg.groups' })).accessToken
  const ac = claims(alice)
  console.log(`   iss=${String(ac.iss)} sub=${String(ac.sub)} preferred_username=${String(ac.preferred_username)} wlcg.groups=${JSON.stringify(ac['wlcg.groups'])}`)

  step(2, "The access point's service account exchanges its IAM token for a schedd IDTOKEN")
  const schedd = await exchange(await robotToken('ctb-cloud-a-ap'), { role: 'schedd', host: 'ap1.cloud-a.example.org', requested_token_type: 'urn:htcondor:token-type:idtoken' })
  await inspect(schedd.body.access_token as string)

  step(3, 'The cloud provisioner gets a startd IDTOKEN for a new execute point')
  const startd = await exchange(await robotToken('ctb-cloud-a-provisioner'), { role: 'startd', host: 'ep-17.cloud-a.example.org' })
  await inspect(startd.body.access_token as string)

  step(4, 'Alice exchanges her IAM token for a WLCG SciToken for the access point')
  const sci = await exchange(alice, { role: 'submit-user', requested_token_type: 'urn:ietf:params:oauth:token-type:jwt', audience: 'condor://ap1.cloud-a.example.org:9618', scope: 'compute.read compute.create compute.modify compute.cancel' })
  await inspect(sci.body.access_token as string)

  step(5, 'Carol (in no group) asks for a submit-user token: refused, and the policy says why')
  const carol = (await devIamUserToken(iam, 'carol', { scope: 'openid profile wlcg wlcg.groups' })).accessToken
  await exchange(carol, { role: 'submit-user' })
  const cc = claims(carol)
  const explained = await call('POST', '/admin/policy/explain', JSON.stringify({
    subject: { iss: cc.iss, sub: cc.sub, client_id: cc.client_id, groups: cc['wlcg.groups'] ?? [], preferred_username: cc.preferred_username },
    role: 'submit-user',
  }), { 'content-type': 'application/json', authorization: `Bearer ${alice}` })
  console.log('   POST /admin/policy/explain (as alice, a /ctb-admins member):')
  for (const r of (explained.body.rules as { ruleId: string; outcome: string; reasons: string[] }[]) ?? []) {
    console.log(`   | ${r.ruleId.padEnd(26)} ${r.outcome.padEnd(16)} ${r.reasons.join('; ')}`)
  }

  step(6, 'Every issuance and denial is in the hash-chained audit log')
  const page = await broker.services.store.query({ limit: 10 })
  for (const r of [...page.records].reverse()) {
    console.log(`   #${r.seq} ${r.event.type.padEnd(13)} ${String(r.event.role ?? '').padEnd(12)} ${String(r.event.issuedSub ?? r.event.reason ?? '')}`)
  }
  const v = await broker.services.store.verify()
  console.log(`   chain: ${v.ok ? `verified, ${v.records} records` : `BROKEN at ${JSON.stringify(v)}`}`)
  step(7, 'Provisioning: one cloud HTC site and one SLURM site from examples/provisioning/hybrid-pool.yaml')
  const operator = await robotToken('provisioner')
  const inputs = join(dir, 'inputs.yaml')
  writeFileSync(inputs, `trust_domain: pool.example.org\niam_issuer: ${iam.issuer}\n`)
  const out = join(dir, 'cluster')
  const opts = ['--broker', broker.url, '--ca-file', broker.devCaFile!]
  const provision = async (args: string[]) => {
    const lines: string[] = []
    console.log(`   $ condor-token-broker provision ${args.map((a) => (a === broker.devCaFile ? '<dev CA>' : a.replaceAll(dir, '$DEMO'))).join(' ')}`)
    const code = await runCli(['provision', ...args], { out: (s) => lines.push(s), err: (s) => lines.push(s), env: { BEARER_TOKEN: operator } })
    console.log(lines.map((l) => `   | ${l.replaceAll(dir, '$DEMO')}`).join('\n'))
    if (code !== 0) throw new Error(`provision ${args[0]} exited ${code}`)
  }
  await provision(['plan', 'examples/provisioning/hybrid-pool.yaml', '--inputs', inputs, ...opts])
  await provision(['render', 'examples/provisioning/hybrid-pool.yaml', '--inputs', inputs, ...opts, '--out', out])
  for (const b of readdirSync(out).sort()) {
    if (!statSync(join(out, b)).isDirectory()) continue
    const files = readdirSync(join(out, b), { recursive: true }).map(String).filter((f) => statSync(join(out, b, f)).isFile()).sort()
    console.log(`   ${b}/: ${files.join(' ')}`)
  }
  const cm = readFileSync(join(out, 'cm', 'condor_config.d', '50-broker.conf'), 'utf8')
  console.log(cm.split('\n').filter((l) => l.startsWith('ALLOW_ADVERTISE')).map((l) => `   | ${l}`).join('\n'))
  await provision(['teardown', '--manifest', join(out, 'manifest.json'), ...opts])

  console.log(`\ndone in ${((performance.now() - started) / 1000).toFixed(1)} s`)
} finally {
  await broker.close()
  rmSync(dir, { recursive: true, force: true })
}
