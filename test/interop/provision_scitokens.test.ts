import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initPoolCa } from '../../src/ca/pool_ca.ts'
import { runCli } from '../../src/cli/main.ts'
import { exchangeForm, JWT, startE2e, type E2e } from '../support/broker_e2e.ts'
import { requireTool } from '../support/peers.ts'
import { scitokensTool } from '../support/scitokens.ts'
import { trustSystemCa } from '../support/system_ca.ts'

// A provisioned access point's SciToken settings, judged by scitokens-cpp: a user's SciToken for the
// audience the bundle configures verifies through the broker's discovery and grants condor:/WRITE there.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const TD = 'pool.example.org'

describe('a provisioned access point accepts the SciTokens the broker mints for it', () => {
  let e2e: E2e
  let untrust: () => void = () => {}
  let out: string

  let caRoot: string

  beforeAll(async () => {
    requireTool('scitokens-verify', 'scitokens-cpp')
    caRoot = mkdtempSync(join(tmpdir(), 'ctb-prov-interop-'))
    await initPoolCa(join(caRoot, 'ca'), { name: 'interop pool CA', now: Math.floor(Date.now() / 1000) })
    e2e = await startE2e({ CTB_POLICY_DIR: 'examples/provisioning/policies', CTB_TRUST_DOMAIN: TD, CTB_CA_DIR: join(caRoot, 'ca') })
    untrust = trustSystemCa(e2e.broker.devCaFile!)
    const dir = join(e2e.dir, 'work')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'bt'), await e2e.robot('provisioner'), { mode: 0o600 })
    writeFileSync(join(dir, 'ca.pem'), e2e.ca)
    writeFileSync(join(dir, 'inputs.yaml'), `trust_domain: ${TD}\niam_issuer: ${e2e.devIam.issuer}\n`)
    out = join(dir, 'out')
    const err: string[] = []
    const code = await runCli(['provision', 'render', EXAMPLE, '--inputs', join(dir, 'inputs.yaml'), '--broker', e2e.broker.url, '--ca-file', join(dir, 'ca.pem'), '--out', out],
      { out: () => {}, err: (s) => err.push(s), env: { BEARER_TOKEN_FILE: join(dir, 'bt') } })
    expect(err.join('\n')).toBe('')
    expect(code).toBe(0)
  }, 120_000)

  afterAll(async () => {
    untrust()
    await e2e?.close()
    if (caRoot) rmSync(caRoot, { recursive: true, force: true })
  })

  it('verifies with scitokens-verify and lists condor:/WRITE for the bundle\'s audience', async () => {
    const conf = readFileSync(join(out, 'ap', 'condor_config.d', '50-broker.conf'), 'utf8')
    const audience = conf.match(/^SCITOKENS_SERVER_AUDIENCE = (\S+)$/m)![1]!
    const alice = await e2e.user('alice')
    const r = await e2e.post('/token', exchangeForm(alice, 'submit-user', { requested_token_type: JWT, audience }))
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    const token = String(r.body.access_token)
    const ok = await scitokensTool('scitokens-verify', [token], e2e.dir)
    expect(ok.code, ok.out).toBe(0)
    const access = await scitokensTool('scitokens-list-access', [token, e2e.broker.services.config.issuer, audience], e2e.dir)
    expect(access.code, access.out).toBe(0)
    expect(access.out).toMatch(/condor:\/WRITE/)
    // The mapfile's broker line maps that token's `<iss>,<sub>` to the user's identity.
    const line = readFileSync(join(out, 'ap', 'certs', 'condor_mapfile'), 'utf8').split('\n').find((l) => l.includes('localhost'))!
    const re = new RegExp(line.split(' ')[1]!.slice(1, -1))
    const sub = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string
    expect(`${e2e.broker.services.config.issuer},${sub}`.replace(re, '$1')).toBe('alice@users.hybrid')
  }, 60_000)
})
