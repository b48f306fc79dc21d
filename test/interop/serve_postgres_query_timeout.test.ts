import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { freePort } from '../support/peers.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { startdExchangeBody, startServeProcess, stopServeProcess } from '../support/serve_process.ts'

/**
 * `serve` on PostgreSQL while the server stops answering without closing anything (its processes
 * SIGSTOPped: a hung host or a network black hole). A token request waiting on its audit record must get an
 * answer within audit.postgres.query_timeout_seconds (docs/audit.md): 503 temporarily_unavailable with
 * Retry-After (RFC 6749 §4.1.2.1), no token. Once the server answers again the broker serves without a
 * restart, the chain verifies, and every token it handed out has its record.
 */
const TIMEOUT_S = 2
/** What the HTTP round trip, minting and the 503's mapping may add to the bound on a loaded 2-core box. */
const SLACK_S = 2

const dir = mkdtempSync(join(tmpdir(), 'ctb-pgqt-'))
let server: TestPostgres
beforeAll(async () => { server = await startPostgres() })
afterAll(async () => {
  try { await server?.stop() } finally { rmSync(dir, { recursive: true, force: true }) }
})

type Answer = { status: number; retryAfter: string | undefined; text: string; ms: number }

function post(url: string, body: string, ca: Buffer): Promise<Answer> {
  const start = Date.now()
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ca, agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded' }, timeout: 60_000 }, (res) => {
      let text = ''
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], text, ms: Date.now() - start }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('no answer within 60 s')))
    req.end(body)
  })
}

/** The jti of an issued JWT (its payload, base64url JSON, RFC 7519 §4.1.7). */
const jtiOf = (jwt: string) => (JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti

it('a request waiting on a frozen PostgreSQL gets 503 with Retry-After within the query timeout; after the thaw the broker serves again, and every token has its record', async () => {
  const dsn = await server.createDatabase('frozen_query')
  const port = await freePort()
  const iamPort = await freePort()
  const env = {
    ...process.env, CTB_DATA_DIR: join(dir, 'broker'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort),
    CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false', CTB_SCITOKEN_WATCH_KEYS: 'false',
    CTB_SHUTDOWN_GRACE_SECONDS: '1', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn,
    CTB_AUDIT_POSTGRES_QUERY_TIMEOUT_SECONDS: String(TIMEOUT_S),
  }
  const broker = await startServeProcess(env)
  const issued: string[] = []
  try {
    const ca = readFileSync(join(dir, 'broker', 'tls/dev-ca.crt'))
    const body = await startdExchangeBody(iamPort)
    const url = `https://127.0.0.1:${port}/token`
    const first = await post(url, body, ca)
    expect(first.status, first.text).toBe(200)
    issued.push(JSON.parse(first.text).access_token)

    server.freeze()
    let frozen: Answer[]
    try {
      // Two at once: one waits on a connection the pool already holds, the other (or its batch) behind it.
      frozen = await Promise.all([post(url, body, ca), post(url, body, ca)])
    } finally { server.thaw() }
    console.log(`frozen PostgreSQL, query_timeout_seconds=${TIMEOUT_S}: answered in ${frozen.map((a) => a.ms).join(' ms, ')} ms`)
    for (const a of frozen) {
      expect(a.status, a.text).toBe(503)
      expect(JSON.parse(a.text)).toMatchObject({ error: 'temporarily_unavailable' })
      expect(a.text).not.toContain('access_token')
      expect(Number(a.retryAfter)).toBeGreaterThan(0)
      expect(a.ms).toBeLessThan((TIMEOUT_S + SLACK_S) * 1000)
    }

    // Served again without a restart: the timed-out connections were discarded, not handed out again.
    let again: Answer | undefined
    for (let i = 0; i < 20; i++) {
      again = await post(url, body, ca)
      if (again.status === 200) break
      await new Promise((r) => setTimeout(r, 250))
    }
    console.log(`after the thaw: ${again!.status} in ${again!.ms} ms`)
    expect(again!.status, again!.text).toBe(200)
    issued.push(JSON.parse(again!.text).access_token)
  } finally {
    server.thaw()
    await stopServeProcess(broker, 'SIGTERM')
  }

  const v = await cli(['audit', 'verify'], { CTB_DATA_DIR: join(dir, 'broker'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn })
  expect(v.code, `${v.out}\n${v.err}`).toBe(0)
  const client = new pg.Client({ connectionString: dsn })
  await client.connect()
  try {
    // Fail closed: no token left without its committed record.
    const { rows } = await client.query<{ jti: string }>("SELECT jti FROM audit_log WHERE type = 'token.issued'")
    const recorded = new Set(rows.map((r) => r.jti))
    for (const t of issued) expect(recorded.has(jtiOf(t)), `token ${jtiOf(t)} has no record`).toBe(true)
  } finally { await client.end() }
}, 120_000)
