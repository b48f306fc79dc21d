import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { afterAll, expect, it } from 'vitest'
import { freePort } from '../support/peers.ts'
import { startServeProcess, stopServeProcess } from '../support/serve_process.ts'

async function startWithRequestInFlight(name: string, graceSeconds: number) {
  const port = await freePort()
  const env = {
    ...process.env, CTB_DATA_DIR: join(dir, name), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(await freePort()),
    CTB_POLICY_WATCH: 'false', CTB_SCITOKEN_WATCH_KEYS: 'false', CTB_SHUTDOWN_GRACE_SECONDS: String(graceSeconds),
  }
  const serve = await startServeProcess(env)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => serve.once('exit', (code, signal) => r({ code, signal })))
  // A request in flight for the whole grace: its headers sent, its body never finished.
  const socket = connect({ host: '127.0.0.1', port, ca: readFileSync(join(dir, name, 'tls/dev-ca.crt')), servername: 'localhost' })
  socket.on('error', () => undefined)
  await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  socket.write('POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant')
  await new Promise((r) => setTimeout(r, 200))
  return { serve, exited, socket }
}

/**
 * After SIGTERM serve drains, then closes its services, the store last; the store's close waits for its
 * writes, which on SQLite a hung disk holds without bound (on PostgreSQL the broker cuts its connections
 * after 10 s: test/interop/serve_postgres_hung_stop.test.ts). As during start-up, a second SIGTERM or SIGINT while
 * stopping ends the process at once, status 128 + the signal's number: the operator (or a harness) need not
 * reach for SIGKILL. Here the first stop is held up by a request in flight with a long grace.
 */
const dir = mkdtempSync(join(tmpdir(), 'ctb-stopsig-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('a second SIGTERM while serve stops ends it at once with status 128 + 15', async () => {
  const { serve, exited, socket } = await startWithRequestInFlight('second', 60)
  try {
    serve.kill('SIGTERM')
    for (let i = 0; i < 500 && !serve.stdoutText().includes('draining'); i++) await new Promise((r) => setTimeout(r, 10))
    expect(serve.stdoutText()).toMatch(/SIGTERM: draining/)
    // Well past SAME_STOP_WITHIN_MS: an operator asking a second time, not the first signal delivered twice.
    await new Promise((r) => setTimeout(r, 500))
    serve.kill('SIGTERM')
    const exit = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000))])
    expect(exit, serve.stderrText().slice(-600)).toEqual({ code: 143, signal: null })
    expect(serve.stdoutText()).toMatch(/SIGTERM again while stopping/)
  } finally {
    socket.destroy()
    await stopServeProcess(serve, 'SIGKILL')
  }
}, 60_000)

it('one SIGINT delivered twice at once (Ctrl-C under npm start: the terminal\'s and npm\'s) is one stop: drained, status 0', async () => {
  const { serve, exited, socket } = await startWithRequestInFlight('doubled', 2)
  try {
    serve.kill('SIGINT')
    // npm's copy comes a moment after the terminal's: two deliveries, not one pending signal the kernel merges.
    await new Promise((r) => setTimeout(r, 20))
    serve.kill('SIGINT')
    const exit = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000))])
    expect(exit, serve.stdoutText() + serve.stderrText().slice(-600)).toEqual({ code: 0, signal: null })
    expect(serve.stdoutText()).toMatch(/SIGINT: draining/)
    expect(serve.stdoutText()).toMatch(/stopped: the grace of 2 s ran out/)
  } finally {
    socket.destroy()
    await stopServeProcess(serve, 'SIGKILL')
  }
}, 60_000)
