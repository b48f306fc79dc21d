import { request } from 'node:https'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../../src/config.ts'
import { devIamTokenRequest, devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import type { RunningDevIam } from '../../src/dev_iam/start_dev_iam.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { startBroker, type RunningBroker } from '../../src/server.ts'

export const TE = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const AT = 'urn:ietf:params:oauth:token-type:access_token'
export const IDTOKEN = 'urn:htcondor:token-type:idtoken'
export const JWT = 'urn:ietf:params:oauth:token-type:jwt'

export interface E2e {
  broker: RunningBroker
  devIam: RunningDevIam
  ca: Buffer
  dir: string
  /** Environment for the CLI pointing at the same data dir. */
  env: NodeJS.ProcessEnv
  robot(clientId: string): Promise<string>
  user(name: string): Promise<string>
  post(path: string, form: Record<string, string | string[]>, headers?: Record<string, string>): Promise<{ status: number; headers: Record<string, string>; body: Record<string, unknown> }>
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }>
  postJson(path: string, json: unknown, headers?: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }>
  close(): Promise<void>
}

/** A broker on its embedded defaults (development CA, development IAM), on ephemeral loopback ports. */
export async function startE2e(extraEnv: NodeJS.ProcessEnv = {}): Promise<E2e> {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-e2e-'))
  const env = { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0', CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false', ...extraEnv }
  const broker = await startBroker(loadConfig({ env }), { log: silentLogger })
  const devIam = broker.services.devIam!
  const ca = readFileSync(broker.devCaFile!)
  const call = (method: string, path: string, body: string | undefined, headers: Record<string, string>) =>
    new Promise<{ status: number; headers: Record<string, string>; body: Record<string, unknown> }>((resolve, reject) => {
      const req = request(`${broker.url}${path}`, { method, ca, headers, timeout: 10_000 }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c) => { text += c })
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: JSON.parse(text) as Record<string, unknown> })
          } catch {
            reject(new Error(`non-JSON response ${res.statusCode}: ${text.slice(0, 200)}`))
          }
        })
      })
      req.on('timeout', () => req.destroy(new Error('timeout')))
      req.on('error', reject)
      req.end(body)
    })
  return {
    broker, devIam, ca, dir, env,
    async robot(clientId) {
      const r = await devIamTokenRequest(devIam, clientId, { grant_type: 'client_credentials', scope: 'wlcg' })
      if (r.status !== 200) throw new Error(`dev IAM refused ${clientId}: ${JSON.stringify(r.body)}`)
      return r.body.access_token as string
    },
    async user(name) {
      return (await devIamUserToken(devIam, name, { scope: 'openid profile wlcg wlcg.groups' })).accessToken
    },
    post(path, form, headers = {}) {
      const p = new URLSearchParams()
      for (const [k, v] of Object.entries(form)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x)
      return call('POST', path, p.toString(), { 'content-type': 'application/x-www-form-urlencoded', ...headers })
    },
    get: (path, headers = {}) => call('GET', path, undefined, headers),
    postJson: (path, json, headers = {}) => call('POST', path, JSON.stringify(json), { 'content-type': 'application/json', ...headers }),
    async close() {
      await broker.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** The RFC 8693 form for one role. */
export function exchangeForm(subjectToken: string, role: string, extra: Record<string, string | string[]> = {}): Record<string, string | string[]> {
  return { grant_type: TE, subject_token: subjectToken, subject_token_type: AT, role, ...extra }
}

export function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>
}

/**
 * Another replica of `e`'s broker: the same configuration, keys and database (PostgreSQL, for replicas),
 * trusting the same development IAM (the configuration names it), on a port of its own.
 */
export function startReplica(e: E2e): Promise<RunningBroker> {
  const config = e.broker.services.config
  return startBroker({ ...config, listen: { ...config.listen, port: 0 }, issuerDefaulted: true }, { log: silentLogger })
}
