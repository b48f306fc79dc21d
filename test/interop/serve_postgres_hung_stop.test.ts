import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { freePort } from '../support/peers.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { startdExchangeBody, startServeProcess, stopServeProcess } from '../support/serve_process.ts'

/**
 * `serve` on PostgreSQL, and a PostgreSQL server that stops answering without closing anything (its
 * processes SIGSTOPped: as a network black hole, the kernel still acknowledges what the broker sends). On
 * SIGTERM the broker must still exit within the bound docs/architecture.md gives: shutdown_grace_seconds for
 * the requests, then at most 10 s for the services' close, after which the connections still waiting on the
 * database are cut and one log line says what was abandoned. A request whose audit record never committed
 * is not answered with a token.
 */
const GRACE_S = 1
/** docs/architecture.md (shutdown): the services' close gets at most 10 s after the grace. */
const SERVICES_BOUND_S = 10
/** Process start-up of the CLI aside, what exiting and the signal round trip may add. */
const SLACK_S = 3

const dir = mkdtempSync(join(tmpdir(), 'ctb-pghung-'))
let server: TestPostgres
beforeAll(async () => { server = await startPostgres() })
afterAll(async () => {
  try { await server?.stop() } finally { rmSync(dir, { recursive: true, force: true }) }
})

type Outcome = { kind: 'complete'; status: number; text: string } | { kind: 'cut'; error: string }

function post(url: string, body: string, ca: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'POST', ca, agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded' }, timeout: 60_000 }, (res) => {
      let text = ''
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ kind: 'complete', status: res.statusCode ?? 0, text }))
      res.on('error', (err) => resolve({ kind: 'cut', error: err.message }))
      res.on('aborted', () => resolve({ kind: 'cut', error: 'aborted' }))
    })
    req.on('error', (err) => resolve({ kind: 'cut', error: err.message }))
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end(body)
  })
}

async function startBroker(name: string, more: Record<string, string> = {}) {
  const dsn = await server.createDatabase(name)
  const port = await freePort()
  const iamPort = await freePort()
  const env = {
    ...process.env, CTB_DATA_DIR: join(dir, name), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort),
    CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false', CTB_SCITOKEN_WATCH_KEYS: 'false',
    CTB_SHUTDOWN_GRACE_SECONDS: String(GRACE_S), CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn, ...more,
  }
  const broker = await startServeProcess(env)
  const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((r) => broker.once('exit', (code, signal) => r({ code, signal, at: Date.now() })))
  const ca = readFileSync(join(dir, name, 'tls/dev-ca.crt'))
  const body = await startdExchangeBody(iamPort)
  return { broker, exited, url: `https://127.0.0.1:${port}/token`, ca, body, dsn }
}

const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))])
const abandonLines = (stderr: string) => stderr.split('\n').filter((l) => l.includes('abandon') && l.includes('PostgreSQL'))

/** SIGTERM, then the exit: status 0, within the grace, the services' bound and some slack. */
async function terminatedWithinBound(broker: Awaited<ReturnType<typeof startBroker>>['broker'], exited: Promise<{ code: number | null; at: number }>): Promise<void> {
  const termAt = Date.now()
  broker.kill('SIGTERM')
  const exit = await within(exited, (GRACE_S + SERVICES_BOUND_S + SLACK_S + 5) * 1000)
  expect(exit, `serve did not exit: ${broker.stderrText().slice(-800)}`).toBeDefined()
  expect(exit!.at - termAt).toBeLessThan((GRACE_S + SERVICES_BOUND_S + SLACK_S) * 1000)
  expect(exit!.code, broker.stderrText().slice(-800)).toBe(0)
}

it('an idle broker whose PostgreSQL stopped answering exits within the bound on SIGTERM, saying what it abandoned', async () => {
  const { broker, exited, url, ca, body } = await startBroker('hung_idle')
  try {
    // A token issued before the freeze: the stop's anchored check has a record to cover.
    const first = await post(url, body, ca)
    expect(first.kind === 'complete' && first.status, JSON.stringify(first)).toBe(200)
    server.freeze()
    await terminatedWithinBound(broker, exited)
    const lines = abandonLines(broker.stderrText())
    expect(lines, broker.stderrText().slice(-1500)).toHaveLength(1)
    // Nothing was waiting to be written: only the check's read is cut.
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'warn', unwritten: 0 })
    expect(JSON.parse(lines[0]!).connections).toBeGreaterThanOrEqual(1)
  } finally {
    server.thaw()
    await stopServeProcess(broker, 'SIGKILL')
  }
}, 90_000)

it('a request waiting on a hung PostgreSQL for its audit record gets no token, and the stop stays bounded', async () => {
  const { broker, exited, url, ca, body } = await startBroker('hung_in_flight')
  try {
    server.freeze()
    const answer = post(url, body, ca)
    // The request reaches its audit write and waits there.
    await new Promise((r) => setTimeout(r, 500))
    await terminatedWithinBound(broker, exited)
    // Fail closed: the record never committed, so the caller got no token (its connection was cut at the grace).
    const outcome = await within(answer, 5_000)
    expect(outcome, 'the request was neither answered nor cut').toBeDefined()
    expect(outcome!.kind === 'complete' && outcome!.status === 200, JSON.stringify(outcome)).toBe(false)
    expect(outcome!.kind === 'complete' ? outcome!.text : '').not.toContain('access_token')
    const lines = abandonLines(broker.stderrText())
    expect(lines, broker.stderrText().slice(-1500)).toHaveLength(1)
    // The token request's record: one write that did not commit.
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'warn', unwritten: 1 })
  } finally {
    server.thaw()
    await stopServeProcess(broker, 'SIGKILL')
  }
}, 90_000)

it('with the rate limits counted in PostgreSQL too, their connections do not hold the exit either', async () => {
  // A caller limit makes rate_limits.store auto use the audit database (docs/rate-limits.md).
  const { broker, exited, url, ca, body } = await startBroker('hung_limits', { CTB_RATE_LIMITS_CALLER_REQUESTS: '1000', CTB_RATE_LIMITS_CALLER_PER: '1h' })
  try {
    expect(broker.stderrText()).toMatch(/"store":"postgres","msg":"rate limits in force"/)
    // A token counted in the database first: the rate-limit pool holds a connection to the server.
    const first = await post(url, body, ca)
    expect(first.kind === 'complete' && first.status, JSON.stringify(first)).toBe(200)
    server.freeze()
    await terminatedWithinBound(broker, exited)
  } finally {
    server.thaw()
    await stopServeProcess(broker, 'SIGKILL')
  }
}, 90_000)

// The bound must never cut a database that answers: a stop on a healthy server ends in the normal way,
// with the token's record committed and the stop's anchor sealed over it, and no connection cut.
it('on a PostgreSQL that answers, the stop cuts nothing: audit flushed, the record and the stop anchor committed', async () => {
  const { broker, exited, url, ca, body, dsn } = await startBroker('healthy_stop', { CTB_RATE_LIMITS_CALLER_REQUESTS: '1000', CTB_RATE_LIMITS_CALLER_PER: '1h' })
  try {
    const first = await post(url, body, ca)
    expect(first.kind === 'complete' && first.status, JSON.stringify(first)).toBe(200)
    const termAt = Date.now()
    broker.kill('SIGTERM')
    const exit = await within(exited, (GRACE_S + SLACK_S + 5) * 1000)
    expect(exit, `serve did not exit: ${broker.stderrText().slice(-800)}`).toBeDefined()
    // Well inside the bound: nothing waited on the database.
    expect(exit!.at - termAt).toBeLessThan((GRACE_S + SLACK_S) * 1000)
    expect(exit!.code, broker.stderrText().slice(-800)).toBe(0)
    expect(abandonLines(broker.stderrText())).toEqual([])
    expect(broker.stdoutText()).toContain('stopped cleanly: every request in flight finished, audit flushed')
    const client = new pg.Client({ connectionString: dsn })
    await client.connect()
    try {
      const issued = await client.query("SELECT count(*)::int AS n FROM audit_log WHERE type = 'token.issued'")
      expect(issued.rows[0].n).toBe(1)
      // The anchored check at stop sealed an anchor at the head: it ran on live connections, not cut ones.
      const head = await client.query('SELECT seq FROM audit_head WHERE id = 1')
      const anchor = await client.query('SELECT sealed FROM audit_anchor')
      expect(anchor.rows).toHaveLength(1)
      expect(String(anchor.rows[0].sealed)).toContain(`"seq":${head.rows[0].seq},`)
    } finally { await client.end() }
  } finally {
    await stopServeProcess(broker, 'SIGKILL')
  }
}, 90_000)

// While the services close (here: waiting out the bound on a hung database) no handler of the policy holder
// or of serve answers SIGHUP any more, and Node's default for SIGHUP ends the process. A reload sent then
// (a config-management run, `systemctl reload` racing a stop) must not turn a clean stop into a death by
// signal that skips the rest of the close and the exit status 0 a supervisor expects.
it('a SIGHUP while the services close is ignored: the stop finishes, status 0', async () => {
  const { broker, exited } = await startBroker('hup_while_stopping')
  try {
    server.freeze()
    broker.kill('SIGTERM')
    for (let i = 0; i < 500 && !broker.stdoutText().includes('draining'); i++) await new Promise((r) => setTimeout(r, 10))
    // The grace (1 s, no request in flight) is long over: the services are closing, held by the database.
    await new Promise((r) => setTimeout(r, 2_000))
    expect(await within(exited, 0)).toBeUndefined()
    broker.kill('SIGHUP')
    const exit = await within(exited, (SERVICES_BOUND_S + SLACK_S + 5) * 1000)
    expect(exit, broker.stderrText().slice(-800)).toMatchObject({ code: 0, signal: null })
    expect(broker.stdoutText()).toMatch(/^stopped: /m)
  } finally {
    server.thaw()
    await stopServeProcess(broker, 'SIGKILL')
  }
}, 90_000)
