import { createServer, type Server } from 'node:https'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'

/**
 * How the double answers the next job-token reads. `revoked`: the 403 of a credential gone for good (with
 * the contract's `"credential": "revoked"`); `refused`: a 403 an operator can lift (a policy refusal, no marker).
 */
export type DoubleMode = 'ok' | 'unavailable' | 'revoked' | 'refused' | 'bad-credential'

export interface JobCredentialsDouble {
  url: string
  caFile: string
  /** Every job-token read: path, query and the bearer presented. */
  requests: Array<{ path: string; query: Record<string, string>; bearer: string | undefined }>
  mode: DoubleMode
  expiresIn: number
  close(): Promise<void>
}

/**
 * A CONTRACT DOUBLE of the broker: an HTTPS server on loopback that implements only the job-token read
 * of the job-credential wire contract (GET /v1/credentials/{user}/{provider}/token), with the status
 * codes and bodies the contract fixes, switched at will: it drives the credmon's handling of each answer
 * (outage, revocation, its own token refused) in seconds and in any order, which the real broker cannot
 * be made to do on demand. The credmon against the real broker is test/integration/credmon_real_broker.test.ts
 * and test/interop/xrootd_job_token.test.ts. Tokens are opaque JWT-shaped strings numbered in order of issue.
 */
export async function startJobCredentialsDouble(dir: string, credmonBearer: string): Promise<JobCredentialsDouble> {
  const tls = await ensureDevTls(dir, ['localhost'])
  let issued = 0
  const state: Omit<JobCredentialsDouble, 'url' | 'close' | 'caFile'> = { requests: [], mode: 'ok', expiresIn: 1200 }
  const server: Server = createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, async (req, res) => {
    const url = new URL(req.url ?? '/', 'https://localhost')
    const m = /^\/v1\/credentials\/([^/]+)\/([^/]+)\/token$/.exec(url.pathname)
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
      res.end(JSON.stringify(body))
    }
    if (req.method !== 'GET' || !m) return json(404, { error: 'invalid_request', error_description: 'not found' })
    const auth = req.headers.authorization
    const bearer = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined
    state.requests.push({ path: url.pathname, query: Object.fromEntries(url.searchParams), bearer })
    if (bearer !== credmonBearer || state.mode === 'bad-credential') return json(401, { error: 'invalid_token', error_description: 'the credd token is not valid' })
    if (state.mode === 'unavailable') return json(503, { error: 'temporarily_unavailable', error_description: 'IAM unreachable' }, { 'retry-after': '1' })
    if (state.mode === 'revoked') return json(403, { error: 'access_denied', error_description: `credential ${m[1]}/${m[2]} revoked`, credential: 'revoked' })
    if (state.mode === 'refused') return json(403, { error: 'access_denied', error_description: 'the policy no longer grants this credential' })
    issued += 1
    const claims = Buffer.from(JSON.stringify({ sub: m[1], n: issued })).toString('base64url')
    return json(200, { access_token: `eyJhbGciOiJFUzI1NiJ9.${claims}.c2ln`, token_type: 'Bearer', expires_in: state.expiresIn, scope: url.searchParams.get('scopes') ?? '' })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return Object.assign(state, {
    url: `https://localhost:${port}`,
    caFile: tls.caFile,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  })
}
