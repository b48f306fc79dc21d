import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { freePort } from '../support/peers.ts'

/**
 * `npm start` runs its script through `sh -c`, and npm forwards SIGINT and SIGTERM to that child only.
 * Debian's and Ubuntu's sh is dash, which stays the parent of the broker and dies of the forwarded SIGTERM,
 * so an admin stopping `npm start` by its pid left the broker serving, orphaned. The script execs the bin,
 * so the child npm signals is the broker whatever the shell.
 */
const ROOT = join(import.meta.dirname, '../..')
const dir = mkdtempSync(join(tmpdir(), 'ctb-npmstart-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const refuses = (port: number) => new Promise<boolean>((resolve) => {
  const s = connect({ host: '127.0.0.1', port })
  s.once('connect', () => { s.destroy(); resolve(false) })
  s.once('error', () => resolve(true))
})

it('SIGTERM to npm start stops the broker, not only npm\'s script shell', async () => {
  const port = await freePort()
  const env = {
    ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(await freePort()),
    CTB_POLICY_WATCH: 'false', CTB_SCITOKEN_WATCH_KEYS: 'false',
  }
  const npm = spawn('npm', ['start', '--silent'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  npm.stdout.on('data', (c) => { out += c })
  npm.stderr.on('data', () => undefined)
  const exited = new Promise((r) => npm.once('exit', r))
  try {
    for (let i = 0; i < 600 && !out.includes('serving at') && npm.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50))
    expect(out).toMatch(/serving at/)
    npm.kill('SIGTERM')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))])
    let stopped = false
    for (let i = 0; i < 50 && !(stopped = await refuses(port)); i++) await new Promise((r) => setTimeout(r, 100))
    expect(stopped, 'the broker still listens after npm start exited').toBe(true)
    expect(out).toMatch(/stopped cleanly/)
  } finally {
    // A failed run leaves the orphaned broker: end it, found by the data directory only this test gave it.
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try { if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`CTB_DATA_DIR=${env.CTB_DATA_DIR}`)) process.kill(Number(pid), 'SIGKILL') } catch { /* gone or not ours */ }
    }
  }
}, 60_000)
