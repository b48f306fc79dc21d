import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { brokerClient } from '../../src/clients/credmon/client.ts'
import { credmonFetch } from '../../src/clients/credmon/index.ts'
import { loadConfig } from '../../src/config.ts'
import { devIamBrokerSettings, devIamTrustedIssuer } from '../../src/dev_iam/broker_settings.ts'
import { defaultDevIamConfig, subjectForUsername } from '../../src/dev_iam/dev_iam_config.ts'
import { devIamTokenRequest, devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import { startDevIam, type RunningDevIam } from '../../src/dev_iam/start_dev_iam.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { startBroker, type RunningBroker } from '../../src/server.ts'
import { exchangeForm, IDTOKEN } from '../support/broker_e2e.ts'
import { cli } from '../support/cli.ts'
import { startIamProxy, type IamProxy } from '../support/iam_proxy.ts'
import { freePort } from '../support/peers.ts'
import { BIN } from '../support/serve_process.ts'

/** IAM's lifetime for the broker client's access tokens: short, so the credmon refreshes every few seconds. */
const IAM_TOKEN_SECONDS = 8
/** The credmon asks for at least this much life, so the broker refreshes rather than reuses at half-life. */
const CREDMON_MINIMUM = 6
const STORAGE_AUD = 'https://storage.cloud-a.example.org'

type Answer = { status: number; headers: Record<string, string | string[] | undefined>; body: Record<string, unknown> }

/**
 * Our credmon, as a separate process, against the real broker (in-process services over HTTPS on
 * loopback, restarted on the same data directory), the shipped policies and the development IAM behind a
 * relay the test can close: users' job credentials from `credential-storer` to `.use` and back out.
 */
describe('credmon against the real broker and the development IAM', () => {
  // The directory outlives each test: the steps below are one story.
  const root = mkdtempSync(join(tmpdir(), 'ctb-credchain-'))
  const credDir = join(root, 'oauth_credentials')
  const tokenFile = join(root, 'credd.token')
  let devIam: RunningDevIam
  let proxy: IamProxy
  let broker: RunningBroker
  let env: NodeJS.ProcessEnv
  let brokerUrl: string
  let ca: Buffer
  let caFile: string
  let jwks: ReturnType<typeof createLocalJWKSet>
  let credmon: ChildProcess | undefined
  let credmonLog = ''
  const use = join(credDir, 'alice', 'cms.use')

  const startTheBroker = async () => { broker = await startBroker(loadConfig({ env }), { log: silentLogger }) }

  beforeAll(async () => {
    const port = await freePort()
    brokerUrl = `https://localhost:${port}`
    const base = defaultDevIamConfig()
    // IAM's "reuse refresh token" off, as many IAMs run: every refresh hands the broker a new one to store.
    devIam = await startDevIam({
      port: 0, defaultAudience: brokerUrl,
      config: { ...base, clients: base.clients.map((c) => (c.client_id === 'broker' ? { ...c, access_token_lifetime: IAM_TOKEN_SECONDS, rotate_refresh_tokens: true } : c)) },
    })
    proxy = await startIamProxy(devIam)
    const issuer = { ...devIamTrustedIssuer(devIamBrokerSettings(devIam), join(root, 'broker.secret'), { audience: brokerUrl }), discovery_url: proxy.discoveryUrl }
    writeFileSync(join(root, 'broker.yaml'), JSON.stringify({
      iam: { issuers: [issuer] },
      credentials: { enabled: true, providers: [{ name: 'cms', kind: 'iam', role: 'job-credentials' }] },
    }))
    env = {
      CTB_CONFIG: join(root, 'broker.yaml'), CTB_DATA_DIR: join(root, 'data'), CTB_LISTEN_PORT: String(port), CTB_ISSUER: brokerUrl,
      CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false',
    }
    await startTheBroker()
    ca = readFileSync(broker.devCaFile!)
    caFile = join(root, 'ca.pem')
    writeFileSync(caFile, ca)
    jwks = createLocalJWKSet((await (await fetch(devIam.jwksUri)).json()) as JSONWebKeySet)
    mkdirSync(credDir, { mode: 0o700 })
  }, 60_000)

  afterAll(async () => {
    if (credmon && credmon.exitCode === null && credmon.signalCode === null) credmon.kill('SIGKILL')
    await broker?.close()
    await proxy?.close()
    await devIam?.close()
    agent.destroy()
    rmSync(root, { recursive: true, force: true })
  })

  const newAgent = () => new Agent({ keepAlive: true, maxSockets: 16 })
  let agent = newAgent()
  function get(path: string, bearer: string): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = request(`${brokerUrl}${path}`, { method: 'GET', ca, agent, headers: { authorization: `Bearer ${bearer}` }, timeout: 20_000 }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c) => { text += c })
        res.on('end', () => { try { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as Record<string, unknown> }) } catch (err) { reject(err) } })
      })
      req.on('timeout', () => req.destroy(new Error('timeout')))
      req.on('error', reject)
      req.end()
    })
  }
  function post(path: string, form: Record<string, string | string[]>): Promise<Answer> {
    const p = new URLSearchParams()
    for (const [k, v] of Object.entries(form)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x)
    return new Promise((resolve, reject) => {
      const req = request(`${brokerUrl}${path}`, { method: 'POST', ca, headers: { 'content-type': 'application/x-www-form-urlencoded' }, timeout: 20_000 }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c) => { text += c })
        res.on('end', () => { try { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as Record<string, unknown> }) } catch (err) { reject(err) } })
      })
      req.on('error', reject)
      req.end(p.toString())
    })
  }

  async function until(cond: () => boolean, ms: number): Promise<boolean> {
    for (let i = 0; i < ms / 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 100))
    return cond()
  }
  const readUse = () => { try { return readFileSync(use, 'utf8') } catch { return undefined } }
  const expOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp
  const tokenInUse = () => { const t = readUse(); return t === undefined ? undefined : (JSON.parse(t) as { access_token: string }).access_token }
  const creddToken = () => readFileSync(tokenFile, 'utf8').trim()
  /** The credmon's own client, to check that it reads the real broker's answers as the contract says. */
  const client = (credential = creddToken) => brokerClient({ brokerUrl, credential, fetch: credmonFetch(caFile) })

  it('issues the access point credd an IDTOKEN by token exchange (role credd)', async () => {
    const robot = await devIamTokenRequest(devIam, 'ctb-cloud-a-ap', { grant_type: 'client_credentials', scope: 'wlcg' })
    expect(robot.status).toBe(200)
    const r = await post('/token', exchangeForm(robot.body.access_token as string, 'credd', { requested_token_type: IDTOKEN, host: 'ap1.cloud-a.example.org' }))
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    writeFileSync(tokenFile, `${r.body.access_token as string}\n`, { mode: 0o600 })
    // A token the broker did not issue to a credd: the contract's 401, which the credmon keeps .use for.
    const robotAsCredd = await get('/v1/credentials/alice/cms/token', robot.body.access_token as string)
    expect(robotAsCredd.status).toBe(401)
    expect(robotAsCredd.body.error).toBe('invalid_token')
    expect(await client(() => robot.body.access_token as string).fetchJobToken('alice', 'cms', {})).toMatchObject({ kind: 'unauthorized' })
  })

  it('registers alice with credential-storer, which yields a .top the credd stores', async () => {
    const { accessToken } = await devIamUserToken(devIam, 'alice', { scope: 'openid profile wlcg wlcg.groups offline_access compute.read storage.read:/store/user storage.create:/store/user storage.modify:/store/user' })
    const r = await cli(['credential-storer', '--print', '--broker', brokerUrl, '--ca-file', caFile, 'cms'], { BEARER_TOKEN: accessToken })
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    const top = JSON.parse(r.out) as Record<string, unknown>
    expect(top).toMatchObject({ broker_url: brokerUrl, user: 'alice', provider: 'cms' })
    mkdirSync(join(credDir, 'alice'), { mode: 0o700 })
    writeFileSync(join(credDir, 'alice', 'cms.top'), r.out, { mode: 0o600 })
  })

  it('keeps the refresh token in the database only as ciphertext', () => {
    const seen = proxy.tokenRequests.flatMap((t) => (t.refreshToken ? [t.refreshToken] : []))
    expect(seen.length).toBeGreaterThan(0)
    const db = new DatabaseSync(join(root, 'data', 'audit.db'), { readOnly: true })
    try {
      const row = db.prepare('SELECT ciphertext, nonce FROM user_credentials WHERE user_name = ? AND provider = ?').get('alice', 'cms') as { ciphertext: Uint8Array; nonce: Uint8Array }
      const ct = Buffer.from(row.ciphertext)
      expect(ct.length).toBeGreaterThan(16)
      for (const rt of seen) expect(ct.includes(Buffer.from(rt))).toBe(false)
    } finally { db.close() }
    for (const f of ['audit.db', 'audit.db-wal']) {
      const p = join(root, 'data', f)
      if (!existsSync(p)) continue
      const bytes = readFileSync(p)
      for (const rt of seen) expect(bytes.includes(Buffer.from(rt)), `${f} holds a refresh token in clear`).toBe(false)
    }
  })

  it('the credmon writes alice/cms.use with IAM\'s token for her, mode 0400, and refreshes it before it expires', async () => {
    credmon = spawn(process.execPath, [BIN, 'credmon', '--broker', brokerUrl, '--ca-file', caFile, '--providers', 'cms', '--cred-dir', credDir,
      '--token-file', tokenFile, '--interval', '1', '--minimum-seconds', String(CREDMON_MINIMUM)], { stdio: ['ignore', 'ignore', 'pipe'] })
    credmon.stderr!.on('data', (c) => { credmonLog += c })
    expect(await until(() => existsSync(use), 15_000), credmonLog).toBe(true)
    expect(statSync(use).mode & 0o777).toBe(0o400)
    const first = JSON.parse(readUse()!) as Record<string, unknown>
    expect(Object.keys(first).sort()).toEqual(['access_token', 'expires_in'])
    expect(first.expires_in).toBeLessThanOrEqual(IAM_TOKEN_SECONDS)
    const { payload } = await jwtVerify(first.access_token as string, jwks, { issuer: devIam.issuer, audience: STORAGE_AUD })
    expect(payload.sub).toBe(subjectForUsername('alice'))
    expect(String(payload.scope).split(' ')).toEqual(expect.arrayContaining(['compute.read', 'storage.read:/store/user/alice', 'storage.modify:/store/user/alice']))

    // Watch for three token lifetimes: the .use changes, and never holds a token past its exp.
    const tokens = new Set<string>()
    const stale: string[] = []
    const end = Date.now() + 3 * IAM_TOKEN_SECONDS * 1000
    while (Date.now() < end) {
      const t = tokenInUse()
      if (t) {
        tokens.add(t)
        if (expOf(t) * 1000 <= Date.now()) stale.push(`exp ${expOf(t)} at ${Date.now() / 1000}`)
      }
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(stale, credmonLog).toEqual([])
    expect(tokens.size).toBeGreaterThanOrEqual(3)
    expect(statSync(use).mode & 0o777).toBe(0o400)
  }, 60_000)

  it('a thousand concurrent requests for alice cost IAM one refresh', async () => {
    // A scope subset is its own cached token, so this count is not mixed up with the credmon's refreshes.
    const path = '/v1/credentials/alice/cms/token?scopes=compute.read&minimum_seconds=1'
    const before = proxy.tokenRequests.filter((t) => t.grantType === 'refresh_token' && t.scope === 'compute.read').length
    const answers = await Promise.all(Array.from({ length: 1000 }, () => get(path, creddToken())))
    const after = proxy.tokenRequests.filter((t) => t.grantType === 'refresh_token' && t.scope === 'compute.read').length
    expect(answers.filter((a) => a.status !== 200).map((a) => a.body)).toEqual([])
    expect(new Set(answers.map((a) => a.body.access_token)).size).toBe(1)
    expect(after - before).toBe(1)
  }, 60_000)

  it('keeps .use through an IAM outage and a broker restart, then refreshes from the stored credential', async () => {
    await proxy.down()
    await broker.close()
    // Kept-alive sockets to the stopped broker may not have seen its FIN yet; a request on one would hang up.
    agent.destroy()
    agent = newAgent()
    await startTheBroker()
    // The restarted broker, IAM down, a token it has not cached: the contract's 503 with Retry-After,
    // which the credmon's own client reads as "keep .use, back off".
    const r = await get('/v1/credentials/alice/cms/token?minimum_seconds=3600', creddToken())
    expect(r.status, JSON.stringify(r.body)).toBe(503)
    expect(r.body.error).toBe('temporarily_unavailable')
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0)
    expect(await client().fetchJobToken('alice', 'cms', { minimum_seconds: 3600 })).toMatchObject({ kind: 'unavailable', retryAfter: Number(r.headers['retry-after']) })
    const held = tokenInUse()!
    expect(await until(() => credmonLog.includes('broker unavailable for alice/cms'), 15_000), credmonLog).toBe(true)
    // Past the held token's expiry the .use is still there, unchanged: the job keeps what it has.
    await until(() => expOf(held) * 1000 < Date.now(), 15_000)
    expect(tokenInUse()).toBe(held)

    await proxy.up()
    // The credmon backs off 30 s after its first failure.
    expect(await until(() => tokenInUse() !== held, 45_000), credmonLog).toBe(true)
    const fresh = tokenInUse()!
    expect(expOf(fresh) * 1000).toBeGreaterThan(Date.now())
    expect(await until(() => credmonLog.includes('refreshed again after'), 5_000), credmonLog).toBe(true)
    await jwtVerify(fresh, jwks, { issuer: devIam.issuer, subject: subjectForUsername('alice') })
  }, 90_000)

  it('removes .use and .top after the credential is revoked, at the next refresh, so the next submit registers again', async () => {
    const r = await cli(['credential', 'revoke', 'alice', 'cms', '--reason', 'left the experiment'], env)
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    const top = join(credDir, 'alice', 'cms.top')
    expect(await until(() => !existsSync(use) && !existsSync(top), 15_000), credmonLog).toBe(true)
    // Its log line follows the unlink asynchronously (lines leave at the end of the credmon's event-loop turn).
    const removed = 'credmon: removed alice/cms.use and alice/cms.top: the broker says the credential is revoked (access_denied: '
    expect(await until(() => credmonLog.includes(removed), 5_000), credmonLog).toBe(true)
    const g = await get('/v1/credentials/alice/cms/token', creddToken())
    expect(g.status).toBe(403)
    expect(g.body).toMatchObject({ error: 'access_denied', credential: 'revoked' })
    expect(await client().fetchJobToken('alice', 'cms', {})).toMatchObject({ kind: 'refused', reason: expect.stringMatching(/^access_denied: /), gone: 'revoked' })
  }, 30_000)
})
