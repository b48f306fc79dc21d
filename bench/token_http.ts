import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Pool } from 'undici'
import { GRANT_TYPE_TOKEN_EXCHANGE as TE, TOKEN_TYPE } from '../src/contract/token_exchange.ts'
import { freePort } from '../src/lib/free_port.ts'
import { PILOT_ENROLMENT_TOKEN_TYPE } from '../src/contract/pilot.ts'
import { load, type LoadResult, type LoadSession } from './http_load.ts'
import { haveWrk, renewalScript, wrkLoad } from './wrk_load.ts'

const AT = TOKEN_TYPE.accessToken

async function iamToken(iamPort: number, form: Record<string, string>, client: string, secret: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${iamPort}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client}:${secret}`).toString('base64')}` },
    body: new URLSearchParams(form),
  })
  const body = await res.json() as { access_token?: string }
  if (!body.access_token) throw new Error(`development IAM refused ${client}: ${JSON.stringify(body)}`)
  return body.access_token
}

export const EXCHANGE_ROW = 'POST /token startd IDTOKEN'
export const RENEWAL_ROW = 'POST /token pilot IDTOKEN renewal'

/** A connection's pilot: renews whatever token the last 200 answer carried, starting from its redeemed one. */
function renewalSession(first: string, form: (token: string) => string): LoadSession {
  let token = first
  return {
    body: () => form(token),
    answer(status, text) { if (status === 200) token = (JSON.parse(text) as { access_token: string }).access_token },
  }
}

/** One enrolment credential for a job of `nodes` nodes at hpc-b, redeemed once per node: the pilots' first tokens. */
async function redeemPilots(origin: string, ca: Buffer | undefined, iamPort: number, nodes: number): Promise<string[]> {
  const factory = await iamToken(iamPort, { grant_type: 'client_credentials', scope: 'wlcg' }, 'ctb-hpc-b-pilot-factory', 'ctb-hpc-b-pilot-factory-secret')
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

/**
 * POST /token against `serve` in a separate process, on the embedded defaults (SQLite audit with group
 * commit, development IAM). `https`: through TLS with the undici client. `http`: plain HTTP (tls.mode off,
 * as behind a TLS proxy) driven by wrk when installed, which leaves the broker more of the two cores than
 * a Node client would. The caller's IAM token is reused, so its verification is a cache hit.
 */
export async function tokenEndpointLoad(options: { connections: number; durationMs: number; transport: 'https' | 'http'; runs: number }): Promise<{ client: string; results: Record<string, LoadResult[]> }> {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-bench-'))
  const port = await freePort()
  const iamPort = await freePort()
  let child: ChildProcess | undefined
  const logFile = join(dir, 'broker.log')
  const logFd = openSync(logFile, 'a', 0o600)
  try {
    child = spawn(process.execPath, [join(import.meta.dirname, '../src/cli/main.ts'), 'serve'], {
      env: {
        ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort),
        CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false',
        // All load comes from one address; BENCH_CONNECTIONS may exceed the per-client default.
        CTB_HTTP_MAX_CONNECTIONS_PER_CLIENT: '0',
        ...(options.transport === 'http' ? { CTB_TLS_MODE: 'off', CTB_ISSUER: `https://localhost:${port}` } : {}),
      },
      // The broker's log (an access line per request) goes to a file, as under systemd or a log shipper,
      // not to a pipe this process would have to drain on the same two cores as the broker.
      stdio: ['ignore', 'pipe', logFd],
    })
    const stderrTail = () => { try { return readFileSync(logFile, 'utf8').slice(-500) } catch { return '' } }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`broker did not start: ${stderrTail()}`)), 30_000)
      child!.stdout!.on('data', (c: Buffer) => { if (c.toString().includes('serving at')) { clearTimeout(timer); resolve() } })
      child!.once('exit', (code) => { clearTimeout(timer); reject(new Error(`broker exited ${code}: ${stderrTail()}`)) })
    })
    const useWrk = options.transport === 'http' && await haveWrk()
    const ca = options.transport === 'https' ? readFileSync(join(dir, 'data/tls/dev-ca.crt')) : undefined
    const origin = `${options.transport}://127.0.0.1:${port}`
    // One 5 s run can land anywhere in a wide band on a shared 2-core box (WAL checkpoints, GC):
    // repeat and let the caller report the median and the range.
    const drive = async (o: Parameters<typeof load>[0]) => {
      const out: LoadResult[] = []
      for (let i = 0; i < options.runs; i++) out.push(await (useWrk ? wrkLoad(o) : load(o)))
      return out
    }
    const form = (subject: string, extra: Record<string, string>) => new URLSearchParams({ grant_type: TE, subject_token: subject, subject_token_type: AT, ...extra }).toString()
    const headers = { 'content-type': 'application/x-www-form-urlencoded' }
    const robot = await iamToken(iamPort, { grant_type: 'client_credentials', scope: 'wlcg' }, 'ctb-cloud-a-provisioner', 'ctb-cloud-a-provisioner-secret')
    const alice = await iamToken(iamPort, { grant_type: 'password', username: 'alice', password: 'alice-password', scope: 'openid profile wlcg wlcg.groups' }, 'dev-cli', 'dev-cli-secret')
    const common = { origin, connections: options.connections, durationMs: options.durationMs, ...(ca ? { ca } : {}) }
    const results: Record<string, LoadResult[]> = {}
    // Renewal: one redemption per connection, each for its own node; then every pilot renews with its
    // current token (the one its last answer carried). wrk keeps the tokens in a queue (renewalScript).
    const tokens = await redeemPilots(origin, ca, iamPort, options.connections)
    const renewForm = (token: string) => new URLSearchParams({ grant_type: TE, subject_token: token, subject_token_type: TOKEN_TYPE.idtoken }).toString()
    results[EXCHANGE_ROW] = await drive({ ...common, path: '/token', method: 'POST', headers, body: form(robot, { role: 'startd', host: 'ep-17.cloud-a.example.org' }) })
    results[RENEWAL_ROW] = [] as LoadResult[]
    for (let i = 0; i < options.runs; i++) {
      results[RENEWAL_ROW].push(useWrk
        ? await wrkLoad({ ...common, path: '/token', script: renewalScript('/token', renewForm, tokens) })
        : await load({ ...common, path: '/token', method: 'POST', headers, sessions: tokens.map((t) => renewalSession(t, renewForm)) }))
    }
    results['POST /token submit-user WLCG SciToken (ES256)'] = await drive({ ...common, path: '/token', method: 'POST', headers, body: form(alice, { role: 'submit-user', requested_token_type: TOKEN_TYPE.jwt, audience: 'condor://ap1.cloud-a.example.org:9618', scope: 'compute.read' }) })
    results['GET /healthz (HTTP stack floor)'] = await drive({ ...common, path: '/healthz' })
    return { client: useWrk ? 'wrk' : 'undici (Node; apt-get install wrk for a cheaper client)', results }
  } finally {
    child?.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 300))
    closeSync(logFd)
    rmSync(dir, { recursive: true, force: true })
  }
}
