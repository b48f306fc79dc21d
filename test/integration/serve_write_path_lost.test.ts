import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { freePort } from '../support/peers.ts'
import { loadUntilStopped, postOnce } from '../support/serve_load.ts'
import { BIN, startdExchangeBody, startServeProcess, stopServeProcess } from '../support/serve_process.ts'

function runCommand(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (c) => { out += c })
    child.stderr.on('data', (c) => { err += c })
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.once('exit', (code) => { clearTimeout(t); resolve({ code, out, err }) })
  })
}

const PRELOAD = pathToFileURL(join(import.meta.dirname, '../support/crash_writer_on_sigusr2.ts')).href
const GRACE_SECONDS = 5
/** EX_SOFTWARE (sysexits.h), the status docs/audit.md documents for a write path lost for good. */
const EX_SOFTWARE = 70

/**
 * The environment of a `serve` on ports of its own, its data under `data`, with the crash preload loaded
 * and `extra` on top (TEST_CRASH_* switches, the grace).
 */
async function crashableEnv(data: string, extra: NodeJS.ProcessEnv = {}): Promise<{ env: NodeJS.ProcessEnv; port: number; iamPort: number }> {
  const port = await freePort()
  const iamPort = await freePort()
  const env = {
    ...process.env, CTB_DATA_DIR: data, CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort),
    CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false', ...extra,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}`,
  }
  return { env, port, iamPort }
}

/** A POST /token whose body never completes: it keeps a drain open for the whole grace. */
async function hangingRequest(port: number, data: string): Promise<TLSSocket> {
  const socket = tlsConnect({ port, host: '127.0.0.1', servername: 'localhost', ca: readFileSync(join(data, 'tls/dev-ca.crt')) })
  socket.on('error', () => { /* closed by the drain when the grace ends */ })
  await new Promise<void>((r) => socket.once('secureConnect', () => r()))
  socket.write('POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=')
  await new Promise((r) => setTimeout(r, 200))
  return socket
}

/**
 * Crash-only: once the SQLite writer thread has died, nothing can commit again until the process restarts,
 * so serve logs one error line, drains like SIGTERM within shutdown_grace_seconds, and exits with status 70
 * for its supervisor (systemd Restart=on-failure, a container's restart policy) to start it again. No token
 * left without its record, the chain verifies, and a restart on the same data dir issues again.
 */
describe('serve when its audit writer thread dies', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-wdie-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('exits 70 within the grace, hands out no token without its record, and serves again after a restart', async () => {
    const port = await freePort()
    const iamPort = await freePort()
    const env = {
      ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort),
      CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false', CTB_SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS),
    }
    const broker = await startServeProcess({ ...env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}` })
    const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((r) => broker.once('exit', (code, signal) => r({ code, signal, at: Date.now() })))
    const ca = readFileSync(join(dir, 'data/tls/dev-ca.crt'))
    const body = await startdExchangeBody(iamPort)

    const { outcomes, stop } = await loadUntilStopped(`https://127.0.0.1:${port}/token`, body, ca, 8, 50)
    const crashAt = Date.now()
    broker.kill('SIGUSR2')
    const exit = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), (GRACE_SECONDS + 15) * 1000))])
    await stop()
    if (!exit) broker.kill('SIGKILL')

    const stderr = broker.stderrText()
    expect(exit, `serve did not exit: ${stderr.slice(-600)}`).toBeDefined()
    expect(exit!.code, stderr.slice(-600)).toBe(EX_SOFTWARE)
    expect(exit!.at - crashAt).toBeLessThan(GRACE_SECONDS * 1000)
    const tally: Record<string, number> = {}
    for (const o of outcomes) { const k = o.kind === 'complete' ? String(o.status) : o.kind; tally[k] = (tally[k] ?? 0) + 1 }
    console.log(`writer thread crashed → serve exited ${exit!.code} after ${exit!.at - crashAt} ms; outcomes ${JSON.stringify(tally)}`)
    // One line says why it stops (each request refused meanwhile has its own line, as in any store outage).
    const stopLines = stderr.split('\n').filter((l) => l.includes('stopped for good'))
    expect(stopLines, stderr.slice(-1200)).toHaveLength(1)
    const stopLine = JSON.parse(stopLines[0]!) as { level: string; msg: string }
    expect(stopLine.level).toBe('error')
    expect(stopLine.msg).toMatch(/audit write path has stopped for good \(audit writer thread failed: injected crash of the writer thread\)/)
    expect(stopLine.msg).toMatch(/exiting with status 70 for its supervisor to restart it/)
    expect(broker.stdoutText()).toMatch(/exiting with status 70$/m)

    expect(outcomes.filter((o) => o.kind === 'reset')).toEqual([])
    const done = outcomes.filter((o) => o.kind === 'complete')
    const issued = done.filter((o) => o.status === 200)
    const refused = done.filter((o) => o.status !== 200)
    expect(issued.length).toBeGreaterThanOrEqual(50)
    for (const o of refused) {
      // RFC 6749 §4.1.2.1 temporarily_unavailable, as for any store outage; never a token.
      expect(o.status, o.text).toBe(503)
      expect(JSON.parse(o.text)).toEqual({ error: 'temporarily_unavailable', error_description: expect.any(String) })
    }

    const store = new SqliteStore({ file: join(dir, 'data', 'audit.db'), writer: 'inline' })
    try {
      const recorded = new Set<string>()
      for await (const r of store.scan()) if (r.event.type === 'token.issued' && r.event.tokenSha256) recorded.add(r.event.tokenSha256)
      const tokens = issued.map((o) => (JSON.parse(o.text) as { access_token: string }).access_token)
      const missing = tokens.filter((t) => !recorded.has(createHash('sha256').update(t).digest('hex')))
      expect(missing).toEqual([])
    } finally {
      await store.close()
    }

    const verify = await runCommand(['audit', 'verify'], env)
    expect(verify.code, verify.out + verify.err).toBe(0)
    expect(verify.out).toMatch(/^audit chain OK: /m)

    // What the supervisor does next: the same command on the same data dir, which issues again.
    const again = await startServeProcess(env)
    try {
      const res = await postOnce(`https://127.0.0.1:${port}/token`, await startdExchangeBody(iamPort), ca)
      expect(res.kind === 'complete' ? res.status : res.kind, JSON.stringify(res)).toBe(200)
    } finally {
      await stopServeProcess(again)
    }
    expect(again.exitCode).toBe(0)
  }, 120_000)

  /**
   * A request that hangs (its body never completes) keeps the drain open for the whole grace, so that
   * signals can arrive while the broker stops for a lost write path: the first SIGTERM asks for the stop
   * already under way and the status stays 70; a second one ends the process at once (128 + 15), as in
   * any stop (docs/architecture.md).
   */
  it.each([
    { signals: 1, status: EX_SOFTWARE, afterGrace: true },
    { signals: 2, status: 128 + 15, afterGrace: false },
  ])('with $signals SIGTERM(s) during that stop, exits $status', async ({ signals, status, afterGrace }) => {
    const grace = 3
    const data = join(dir, `data-${signals}`)
    const { env, port } = await crashableEnv(data, { CTB_SHUTDOWN_GRACE_SECONDS: String(grace) })
    const broker = await startServeProcess(env)
    const exited = new Promise<{ code: number | null; at: number }>((r) => broker.once('exit', (code) => r({ code, at: Date.now() })))
    let hanging: TLSSocket | undefined
    try {
      hanging = await hangingRequest(port, data)
      broker.kill('SIGUSR2')
      for (let i = 0; i < 100 && !broker.stdoutText().includes('audit write path lost: draining'); i++) await new Promise((r) => setTimeout(r, 20))
      expect(broker.stdoutText()).toMatch(/audit write path lost: draining/)
      const drainAt = Date.now()
      broker.kill('SIGTERM')
      if (signals === 2) {
        // Past SAME_STOP_WITHIN_MS (250 ms), so it is a second request, not the first delivered twice.
        await new Promise((r) => setTimeout(r, 400))
        expect(broker.exitCode).toBeNull()
        broker.kill('SIGTERM')
      }
      const exit = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), (grace + 10) * 1000))])
      expect(exit, broker.stderrText().slice(-600)).toBeDefined()
      expect(exit!.code, broker.stdoutText()).toBe(status)
      if (afterGrace) expect(exit!.at - drainAt).toBeGreaterThanOrEqual(grace * 1000 - 200)
      else expect(exit!.at - drainAt).toBeLessThan(grace * 1000)
    } finally {
      hanging?.destroy()
      if (broker.exitCode === null && broker.signalCode === null) broker.kill('SIGKILL')
    }
  }, 60_000)

  /**
   * The other order: the writer thread dies while a SIGTERM's drain is under way (a hanging request holds
   * it open). The loss must not pass unseen: the journal gets the one error line, the last line does not
   * claim "audit flushed", and the status is 70 as when the loss came first (docs/audit.md): the same two
   * events end the process the same way whichever came first.
   */
  it('when the writer thread dies during a SIGTERM drain, says so and exits 70', async () => {
    const grace = 3
    const data = join(dir, 'data-term-first')
    const { env, port } = await crashableEnv(data, { CTB_SHUTDOWN_GRACE_SECONDS: String(grace) })
    const broker = await startServeProcess(env)
    const exited = new Promise<{ code: number | null }>((r) => broker.once('exit', (code) => r({ code })))
    let hanging: TLSSocket | undefined
    try {
      hanging = await hangingRequest(port, data)
      broker.kill('SIGTERM')
      for (let i = 0; i < 100 && !broker.stdoutText().includes('SIGTERM: draining'); i++) await new Promise((r) => setTimeout(r, 20))
      expect(broker.stdoutText()).toMatch(/SIGTERM: draining/)
      broker.kill('SIGUSR2')
      const exit = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), (grace + 10) * 1000))])
      expect(exit, broker.stderrText().slice(-600)).toBeDefined()
      const stopLines = broker.stderrText().split('\n').filter((l) => l.includes('stopped for good'))
      expect(stopLines, broker.stderrText().slice(-1200)).toHaveLength(1)
      expect((JSON.parse(stopLines[0]!) as { level: string }).level).toBe('error')
      expect(broker.stdoutText()).not.toMatch(/audit flushed/)
      expect(broker.stdoutText()).toMatch(/exiting with status 70$/m)
      expect(exit!.code, broker.stdoutText()).toBe(EX_SOFTWARE)
    } finally {
      hanging?.destroy()
      if (broker.exitCode === null && broker.signalCode === null) broker.kill('SIGKILL')
    }
  }, 60_000)

  /**
   * Not every thread's death is the write path's: the WAL checkpointer thread, which the writer starts
   * once the WAL is ~1,000 frames long, only moves checkpoints off the writer, and when it fails the
   * writer's automatic checkpoint comes back (sqlite_checkpointer.ts). serve must go on issuing, /healthz
   * stay 200, and no status 70 follow.
   */
  it('keeps serving, live, when the checkpointer thread dies', async () => {
    const data = join(dir, 'data-checkpointer')
    const { env, port, iamPort } = await crashableEnv(data, { TEST_CRASH_CHECKPOINTER_THREAD: '1' })
    const broker = await startServeProcess(env)
    try {
      const ca = readFileSync(join(data, 'tls/dev-ca.crt'))
      const body = await startdExchangeBody(iamPort)
      let crashed = false
      const client = async () => {
        // Until the writer has started the checkpointer (and it died), then a little longer: commits go on.
        for (let i = 0; i < 3000 && !crashed; i++) {
          const o = await postOnce(`https://127.0.0.1:${port}/token`, body, ca)
          expect(o.kind === 'complete' ? o.status : o.kind, JSON.stringify(o)).toBe(200)
          crashed = broker.stderrText().includes('test: crashing the checkpointer thread')
        }
      }
      await Promise.all(Array.from({ length: 8 }, client))
      expect(crashed, 'the checkpointer thread never started').toBe(true)
      await new Promise((r) => setTimeout(r, 300))
      for (let i = 0; i < 20; i++) {
        const o = await postOnce(`https://127.0.0.1:${port}/token`, body, ca)
        expect(o.kind === 'complete' ? o.status : o.kind, JSON.stringify(o)).toBe(200)
      }
      const health = await new Promise<number>((resolve, reject) => {
        request(`https://127.0.0.1:${port}/healthz`, { ca, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject).end()
      })
      expect(health).toBe(200)
      expect(broker.exitCode).toBeNull()
      expect(broker.stderrText()).not.toMatch(/stopped for good/)
    } finally {
      await stopServeProcess(broker)
    }
    expect(broker.exitCode).toBe(0)
  }, 90_000)

  /**
   * The writer thread dying while serve is still starting, before it listens and subscribes: the store
   * remembers the death and serve hears it the moment it subscribes, so it stops with 70 instead of
   * serving 503 until someone restarts it by hand.
   */
  it('exits 70 when the writer thread died before serve was listening', async () => {
    const { env } = await crashableEnv(join(dir, 'data-at-start'), { TEST_CRASH_WRITER_THREAD_AT_START: '1' })
    const run = await runCommand(['serve'], env)
    expect(run.code, run.out + run.err.slice(-600)).toBe(EX_SOFTWARE)
    expect(run.out).toMatch(/serving at /)
    const stopLines = run.err.split('\n').filter((l) => l.includes('stopped for good'))
    expect(stopLines, run.err.slice(-1200)).toHaveLength(1)
    expect(stopLines[0]).toMatch(/injected crash of the writer thread at its start/)
  }, 60_000)
})
