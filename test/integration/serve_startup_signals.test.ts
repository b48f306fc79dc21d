import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { request } from 'node:https'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort, requireTool } from '../support/peers.ts'
import { BIN } from '../support/serve_process.ts'

type Exit = { code: number | null; signal: NodeJS.Signals | null }

interface Serve {
  child: ChildProcess
  exited: Promise<Exit>
  out(): string
  err(): string
}

function spawnServe(env: NodeJS.ProcessEnv, args: string[] = []): Serve {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout!.on('data', (c) => { out += c })
  child.stderr!.on('data', (c) => { err += c })
  const exited = new Promise<Exit>((r) => child.once('exit', (code, signal) => r({ code, signal })))
  return { child, exited, out: () => out, err: () => err }
}

/** Waits (bounded) until `test` holds or the process ends; says which. */
async function until(serve: Serve, test: () => boolean, ms = 30_000): Promise<'ok' | 'exited' | 'timeout'> {
  let ended = false
  void serve.exited.then(() => { ended = true })
  for (let waited = 0; waited < ms; waited += 10) {
    if (test()) return 'ok'
    if (ended) return 'exited'
    await new Promise((r) => setTimeout(r, 10))
  }
  return 'timeout'
}

/**
 * Opens the FIFO for writing once serve has opened it for reading (bounded): from then until the config is
 * written, serve is in the middle of start-up, blocked reading its configuration file.
 */
async function openWhenServeReads(fifo: string): Promise<number> {
  for (let i = 0; i < 3000; i++) {
    try {
      return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err
    }
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error('serve never opened its config file')
}

/** How the process ended, if it ends within `ms`. */
function endsWithin(serve: Serve, ms: number): Promise<Exit | undefined> {
  return Promise.race([serve.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))])
}

function healthz(port: number, ca: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`https://127.0.0.1:${port}/healthz`, { ca, servername: 'localhost', agent: false, timeout: 10_000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end()
  })
}

async function stop(serve: Serve): Promise<Exit | undefined> {
  if (serve.child.exitCode === null && serve.child.signalCode === null) serve.child.kill('SIGTERM')
  return Promise.race([serve.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000))])
}

/**
 * systemd runs the unit as Type=simple, so `systemctl reload` (ExecReload=kill -HUP) may reach serve while it
 * still reads its config, opens the database or creates its keys; so may a config-management run. Node ends
 * a process on SIGHUP until something listens for it. A HUP in start-up must not end the broker: it is held
 * and applied as a reload once the broker serves (the files may have changed after they were read). A TERM
 * in start-up ends the broker cleanly, exit 0, once start-up has finished writing what it writes.
 */
describe('signals while serve starts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-startsig-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  requireTool('mkfifo', 'coreutils')

  async function env(name: string) {
    const port = await freePort()
    const iamPort = await freePort()
    return {
      port,
      env: {
        ...process.env, CTB_DATA_DIR: join(dir, name), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort),
        CTB_POLICY_WATCH: 'false', CTB_SCITOKEN_WATCH_KEYS: 'false', CTB_SHUTDOWN_GRACE_SECONDS: '2',
      },
    }
  }

  function fifo(name: string): string {
    const path = join(dir, `${name}.yaml`)
    const made = spawnSync('mkfifo', [path])
    expect(made.status, String(made.stderr)).toBe(0)
    return path
  }

  it('SIGHUP while serve reads its config: still serves, and reloads once started', async () => {
    const { port, env: e } = await env('hup-config')
    const config = fifo('hup-config')
    const serve = spawnServe(e, ['--config', config])
    try {
      const fd = await openWhenServeReads(config)
      serve.child.kill('SIGHUP')
      // Give a default-disposition SIGHUP the time to end the process before start-up continues.
      expect(await endsWithin(serve, 300)).toBeUndefined()
      writeSync(fd, 'trust_domain: pool.example.org\n')
      closeSync(fd)
      expect(await until(serve, () => serve.out().includes('serving at')), serve.err().slice(-600)).toBe('ok')
      expect(await healthz(port, readFileSync(join(dir, 'hup-config/tls/dev-ca.crt')))).toBe(200)
      // The held HUP is the reload SIGHUP always is: keys and TLS certificate taken up again.
      expect(await until(serve, () => /TLS certificate reloaded/.test(serve.err()))).toBe('ok')
      expect(serve.err()).toMatch(/signing keys reloaded/)
    } finally {
      const exit = await stop(serve)
      expect(exit).toEqual({ code: 0, signal: null })
    }
  }, 60_000)

  it('SIGHUP right after the first line it writes: still serves', async () => {
    const { port, env: e } = await env('hup-first-line')
    const serve = spawnServe(e)
    try {
      expect(await until(serve, () => serve.out().length > 0 || serve.err().length > 0), serve.err()).toBe('ok')
      serve.child.kill('SIGHUP')
      expect(await until(serve, () => serve.out().includes('serving at')), serve.err().slice(-600)).toBe('ok')
      expect(await healthz(port, readFileSync(join(dir, 'hup-first-line/tls/dev-ca.crt')))).toBe(200)
    } finally {
      const exit = await stop(serve)
      expect(exit).toEqual({ code: 0, signal: null })
    }
  }, 60_000)

  it('SIGTERM while serve reads its config: finishes starting, then stops cleanly with status 0', async () => {
    const { env: e } = await env('term-config')
    const config = fifo('term-config')
    const serve = spawnServe(e, ['--config', config])
    try {
      const fd = await openWhenServeReads(config)
      serve.child.kill('SIGTERM')
      // Not ended by the signal itself: start-up goes on to a clean stop.
      expect(await endsWithin(serve, 300)).toBeUndefined()
      writeSync(fd, 'trust_domain: pool.example.org\n')
      closeSync(fd)
      const exit = await Promise.race([serve.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 30_000))])
      expect(exit, serve.err().slice(-600)).toEqual({ code: 0, signal: null })
      expect(serve.out()).toMatch(/SIGTERM/)
      expect(serve.out()).toMatch(/stopped cleanly/)
      // Nothing half-written: the audit log serve opened verifies.
      const verify = spawnSync(process.execPath, [BIN, 'audit', 'verify'], { env: e, encoding: 'utf8', timeout: 60_000 })
      expect(verify.status, verify.stdout + verify.stderr).toBe(0)
    } finally {
      await stop(serve)
    }
  }, 90_000)

  it('one SIGTERM delivered twice at once while serve starts (Ctrl-C under npm start) is one stop: clean, status 0', async () => {
    // A terminal's Ctrl-C signals the whole process group, and npm (run-script) forwards the signal to its
    // child as well: the start script execs the broker, so it is that child, and gets SIGINT twice within
    // a millisecond. It is one request to stop, not an operator asking a second time.
    const { env: e } = await env('term-doubled')
    const config = fifo('term-doubled')
    const serve = spawnServe(e, ['--config', config])
    try {
      const fd = await openWhenServeReads(config)
      serve.child.kill('SIGTERM')
      // npm's copy comes a moment after the terminal's: two deliveries, not one pending signal the kernel merges.
      await new Promise((r) => setTimeout(r, 20))
      serve.child.kill('SIGTERM')
      writeSync(fd, 'trust_domain: pool.example.org\n')
      closeSync(fd)
      const exit = await Promise.race([serve.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 30_000))])
      expect(exit, serve.out() + serve.err().slice(-600)).toEqual({ code: 0, signal: null })
      expect(serve.out()).toMatch(/stopped cleanly/)
    } finally {
      await stop(serve)
    }
  }, 60_000)

  it('a second SIGTERM while serve starts ends it before it serves, with status 128 + 15', async () => {
    // Start-up waits on a database that accepts the connection and never answers (the start-up that hangs),
    // with the event loop free: each signal's handler runs as it arrives.
    const held: Socket[] = []
    const db = createServer((socket) => { held.push(socket) })
    await new Promise<void>((r) => db.listen(0, '127.0.0.1', r))
    const { env: e } = await env('term-twice')
    const serve = spawnServe({ ...e, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: `postgres://broker@127.0.0.1:${(db.address() as AddressInfo).port}/broker` })
    try {
      expect(await until(serve, () => held.length > 0), serve.err().slice(-600)).toBe('ok')
      serve.child.kill('SIGTERM')
      expect(await until(serve, () => serve.out().includes('SIGTERM during start-up'))).toBe('ok')
      // Well past SAME_STOP_WITHIN_MS: an operator asking a second time, not the first signal delivered twice.
      await new Promise((r) => setTimeout(r, 500))
      serve.child.kill('SIGTERM')
      const exit = await endsWithin(serve, 3_000)
      expect(exit, serve.err().slice(-600)).toEqual({ code: 143, signal: null })
      expect(serve.out()).toMatch(/SIGTERM again during start-up/)
      expect(serve.out()).not.toMatch(/serving at/)
    } finally {
      await stop(serve)
      for (const socket of held) socket.destroy()
      await new Promise((r) => db.close(r))
    }
  }, 60_000)
})
