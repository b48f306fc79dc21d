import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { GRANT_TYPE_TOKEN_EXCHANGE as TE, TOKEN_TYPE } from '../src/contract/token_exchange.ts'
import { freePort } from '../src/lib/free_port.ts'
import { PILOT_ENROLMENT_TOKEN_TYPE } from '../src/contract/pilot.ts'
import { load, type LoadResult, type LoadSession } from './http_load.ts'
import { startBroker, startDevIamProcess, startReference, writeBrokerConfig, type BenchProcess } from './processes.ts'
import { REFERENCE_CLIENT } from './reference_provider.ts'
import { rssOf } from './rss.ts'
import { haveWrk, renewalScript, wrkLoad } from './wrk_load.ts'

const AT = TOKEN_TYPE.accessToken

export const REFERENCE_ROW = 'reference: oidc-provider client_credentials ES256 JWT'
export const EXCHANGE_ROW = 'POST /token startd IDTOKEN'
export const RENEWAL_ROW = 'POST /token pilot IDTOKEN renewal'
export const SCITOKEN_ROW = 'POST /token submit-user WLCG SciToken (ES256)'
export const HEALTH_ROW = 'GET /healthz (HTTP stack floor)'

/** A row's runs, or why it could not run. */
export type Row = { runs: LoadResult[] } | { error: string }

export const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`

export async function iamToken(iamOrigin: string, form: Record<string, string>, client: string, secret: string): Promise<string> {
  const res = await fetch(new URL('token', iamOrigin), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(client, secret) },
    body: new URLSearchParams(form),
  })
  const body = await res.json() as { access_token?: string }
  if (!body.access_token) throw new Error(`development IAM refused ${client}: ${JSON.stringify(body)}`)
  return body.access_token
}

/** A connection's pilot: renews whatever token the last 200 answer carried, starting from its redeemed one. */
function renewalSession(first: string, form: (token: string) => string): LoadSession {
  let token = first
  return {
    body: () => form(token),
    answer(status, text) { if (status === 200) token = (JSON.parse(text) as { access_token: string }).access_token },
  }
}

/** One enrolment credential for a job of `nodes` nodes at hpc-b, redeemed once per node: the pilots' first tokens. */
export async function redeemPilots(origin: string, ca: Buffer | undefined, iamOrigin: string, nodes: number): Promise<string[]> {
  const factory = await iamToken(iamOrigin, { grant_type: 'client_credentials', scope: 'wlcg' }, 'ctb-hpc-b-pilot-factory', 'ctb-hpc-b-pilot-factory-secret')
  const pool = new Pool(origin, { connections: 4, ...(ca ? { connect: { ca } } : {}) })
  const post = async (form: Record<string, string>) => {
    const res = await pool.request({ path: '/token', method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() })
    const body = await res.body.json() as { access_token?: string }
    if (res.statusCode !== 200 || !body.access_token) throw new Error(`pilot set-up refused: ${res.statusCode} ${JSON.stringify(body)}`)
    return body.access_token
  }
  try {
    const credential = await post({ grant_type: TE, subject_token: factory, subject_token_type: AT, requested_token_type: PILOT_ENROLMENT_TOKEN_TYPE, role: 'pilot', pilot_count: String(nodes), lifetime: '3600' })
    const jobEnd = String(Math.floor(Date.now() / 1000) + 7200)
    const tokens: string[] = []
    for (let i = 0; i < nodes; i++) tokens.push(await post({ grant_type: TE, subject_token: credential, subject_token_type: PILOT_ENROLMENT_TOKEN_TYPE, slurm_job_id: '4242', node: `node${i}`, job_end: jobEnd }))
    return tokens
  } finally {
    await pool.close()
  }
}

/** The development IAM (own process) and a broker trusting it, sharing `dir`; what every broker row needs. */
export interface BrokerSetup {
  iam: BenchProcess
  iamOrigin: string
  configFile: string
  brokerEnv(port: number, extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv
}

/** Starts the development IAM for brokers at `issuer` and writes their config; plain HTTP or the dev TLS. */
export async function setUpIam(dir: string, issuer: string): Promise<BrokerSetup> {
  const iam = await startDevIamProcess(await freePort(), issuer, join(dir, 'dev-iam.log'))
  const configFile = writeBrokerConfig(dir, iam.settings, issuer)
  return {
    iam, iamOrigin: iam.settings.issuer, configFile,
    brokerEnv: (port, extra = {}) => ({
      CTB_CONFIG: configFile, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_ISSUER: issuer,
      CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false',
      // All load comes from one address; BENCH_CONNECTIONS may exceed the per-client default.
      CTB_HTTP_MAX_CONNECTIONS_PER_CLIENT: '0',
      ...extra,
    }),
  }
}

export interface TokenEndpointResult {
  client: string
  rows: Record<string, Row>
  /**
   * The broker process's memory: idle after start, its peak (VmHWM) after the POST /token rows, and once
   * every row ran. The peak grows with the records written (SQLite's page cache, docs/performance.md).
   */
  rss?: { idleMb: number; tokenPeakMb: number; peakMb: number }
}

/**
 * POST /token against `serve` in a separate process, with the development IAM in another (its memory and
 * CPU are not the broker's) and, on plain HTTP, the oidc-provider reference in a third, driven by the same
 * client with the same connections. `https`: through TLS (wrk does not check the development
 * certificate; the undici client does). `http`: plain HTTP (tls.mode off, as behind a TLS proxy). Both are
 * driven by wrk when installed, which leaves the servers more of the two cores than a Node client would.
 * The caller's IAM token is reused, so its verification is a cache hit.
 */
export async function tokenEndpointLoad(options: { connections: number; durationMs: number; transport: 'https' | 'http'; runs: number }): Promise<TokenEndpointResult> {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-bench-'))
  const started: BenchProcess[] = []
  const rows: Record<string, Row> = {}
  const useWrk = await haveWrk()
  const client = useWrk ? 'wrk' : 'undici (Node; apt-get install wrk for a cheaper client)'
  try {
    const port = await freePort()
    const setup = await setUpIam(dir, `https://localhost:${port}`)
    started.push(setup.iam)
    const broker = await startBroker(setup.brokerEnv(port, options.transport === 'http' ? { CTB_TLS_MODE: 'off' } : {}), join(dir, 'broker.log'))
    started.push(broker)
    // Idle: after start-up settles (background jti index, first revocation refresh).
    await sleep(2000)
    const idleMb = rssOf(broker.pid).rssMb
    const ca = options.transport === 'https' ? readFileSync(join(dir, 'data/tls/dev-ca.crt')) : undefined
    const origin = `${options.transport}://127.0.0.1:${port}`
    const common = { origin, connections: options.connections, durationMs: options.durationMs, ...(ca ? { ca } : {}) }
    // One run can land anywhere in a wide band on a shared 2-core box (WAL checkpoints, GC):
    // repeat and let the caller report the median and the range. A row that throws is reported, not fatal.
    const row = async (name: string, once: () => Promise<LoadResult>) => {
      try {
        const runs: LoadResult[] = []
        for (let i = 0; i < options.runs; i++) runs.push(await once())
        rows[name] = runs
          .some((r) => r.requests - r.errors > 0) ? { runs } : { error: `no successful request${runs.find((r) => r.firstError)?.firstError ? `: ${runs.find((r) => r.firstError)!.firstError}` : ''}` }
      } catch (err) {
        rows[name] = { error: (err as Error).message.split('\n')[0]! }
      }
    }
    const drive = (o: Parameters<typeof load>[0]) => () => useWrk ? wrkLoad(o) : load(o)
    const headers = { 'content-type': 'application/x-www-form-urlencoded' }

    if (options.transport === 'http') {
      const refPort = await freePort()
      const reference = await startReference(refPort, join(dir, 'reference.log')).catch((err: Error) => { rows[REFERENCE_ROW] = { error: err.message.split('\n')[0]! }; return undefined })
      if (reference) {
        started.push(reference)
        await row(REFERENCE_ROW, drive({
          ...common, origin: `http://127.0.0.1:${refPort}`, path: '/token', method: 'POST',
          headers: { ...headers, authorization: basic(REFERENCE_CLIENT.id, REFERENCE_CLIENT.secret) },
          body: 'grant_type=client_credentials&scope=compute.read',
        }))
        await reference.stop()
        started.splice(started.indexOf(reference), 1)
      }
    }

    const form = (subject: string, extra: Record<string, string>) => new URLSearchParams({ grant_type: TE, subject_token: subject, subject_token_type: AT, ...extra }).toString()
    const robot = await iamToken(setup.iamOrigin, { grant_type: 'client_credentials', scope: 'wlcg' }, 'ctb-cloud-a-provisioner', 'ctb-cloud-a-provisioner-secret')
    const alice = await iamToken(setup.iamOrigin, { grant_type: 'password', username: 'alice', password: 'alice-password', scope: 'openid profile wlcg wlcg.groups' }, 'dev-cli', 'dev-cli-secret')
    await row(EXCHANGE_ROW, drive({ ...common, path: '/token', method: 'POST', headers, body: form(robot, { role: 'startd', host: 'ep-17.cloud-a.example.org' }) }))
    // Renewal: one redemption per connection, each for its own node; then every pilot renews with its
    // current token (the one its last answer carried). wrk keeps the tokens in a queue (renewalScript).
    const renewForm = (token: string) => new URLSearchParams({ grant_type: TE, subject_token: token, subject_token_type: TOKEN_TYPE.idtoken }).toString()
    let tokens: string[] | undefined
    await row(RENEWAL_ROW, async () => {
      // Each run starts from the previous run's survivors only under wrk; fresh pilots keep runs alike.
      tokens = await redeemPilots(origin, ca, setup.iamOrigin, options.connections)
      // Under wrk, the warm-up gets pilots of its own, and each run spare pilots for a token whose answer wrk
      // dropped: the broker refuses a token presented after its successor was renewed with as reuse (and
      // revokes its pilot), so no token may be presented twice (renewalScript).
      const more = () => redeemPilots(origin, ca, setup.iamOrigin, options.connections)
      return useWrk
        ? wrkLoad({
          ...common, path: '/token',
          script: renewalScript('/token', renewForm, tokens, await more()),
          warmupScript: renewalScript('/token', renewForm, await more(), await more()),
        })
        : load({ ...common, path: '/token', method: 'POST', headers, sessions: tokens.map((t) => renewalSession(t, renewForm)) })
    })
    await row(SCITOKEN_ROW, drive({ ...common, path: '/token', method: 'POST', headers, body: form(alice, { role: 'submit-user', requested_token_type: TOKEN_TYPE.jwt, audience: 'condor://ap1.cloud-a.example.org:9618', scope: 'compute.read' }) }))
    const tokenPeakMb = rssOf(broker.pid).hwmMb
    await row(HEALTH_ROW, drive({ ...common, path: '/healthz' }))
    return { client, rows, rss: { idleMb, tokenPeakMb, peakMb: rssOf(broker.pid).hwmMb } }
  } catch (err) {
    // Set-up failed (IAM or broker would not start): every row that has not run could not.
    for (const name of [REFERENCE_ROW, EXCHANGE_ROW, RENEWAL_ROW, SCITOKEN_ROW, HEALTH_ROW]) {
      if (name === REFERENCE_ROW && options.transport !== 'http') continue
      rows[name] ??= { error: (err as Error).message.split('\n')[0]! }
    }
    return { client, rows }
  } finally {
    for (const p of started.reverse()) await p.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
