import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/peers.ts'

// What an operator gets: `npm pack`, `npm install -g` of the tarball into a fresh prefix, and the
// installed command. Under node_modules Node does not strip types, so this is the test that the package
// carries JavaScript and that its bin finds it. Dependencies come from npm's cache (filled by `npm ci`),
// the registry only for what is missing; the optional project-local Node is left out (README).
const ROOT = join(import.meta.dirname, '../..')
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version

/** The environment without the parent npm's npm_* variables, which would steer the nested npm calls. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && !k.startsWith('CTB_')) env[k] = v
  // The installed bin's `#!/usr/bin/env node` must find a Node >= 22.19: the one running this test.
  env.PATH = `${dirname(process.execPath)}${delimiter}${env.PATH ?? ''}`
  return { ...env, ...extra }
}

/**
 * Runs a command with a hard deadline. Asynchronous, so vitest's own timeouts still work, and killed with
 * SIGKILL (its whole process group) at the deadline: npm does not always end on SIGTERM.
 */
function run(cmd: string, args: string[], opts: { cwd: string; timeoutMs: number }): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c) => { stdout += c })
    child.stderr.on('data', (c) => { stderr += c })
    const t = setTimeout(() => { stderr += `\n(killed after ${opts.timeoutMs} ms)`; try { process.kill(-child.pid!, 'SIGKILL') } catch { /* gone */ } }, opts.timeoutMs)
    child.once('close', (status) => { clearTimeout(t); resolve({ status, stdout, stderr }) })
  })
}

function healthz(url: string, ca: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/healthz`, { ca, timeout: 10_000 }, (res) => {
      let text = ''
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end()
  })
}

describe('the npm package, installed globally', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-pack-'))
  const prefix = join(dir, 'prefix')
  const bin = join(prefix, 'bin', 'condor-token-broker')
  const installed = join(prefix, 'lib', 'node_modules', 'condor-token-broker')
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  beforeAll(async () => {
    const pack = await run('npm', ['pack', '--pack-destination', dir], { cwd: ROOT, timeoutMs: 90_000 })
    expect(pack.status, pack.stderr.slice(-2000)).toBe(0)
    const tgz = readdirSync(dir).filter((f) => f.endsWith('.tgz'))
    expect(tgz).toEqual([`condor-token-broker-${VERSION}.tgz`])
    // npm's cache answers after `npm ci`; the fetch limits keep a stalled registry from holding the run.
    const install = await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--omit=optional', '--no-audit', '--no-fund',
      '--fetch-timeout=30000', '--fetch-retries=1', join(dir, tgz[0]!)], { cwd: dir, timeoutMs: 120_000 })
    expect(install.status, install.stderr.slice(-2000)).toBe(0)
  }, 240_000)

  it('carries built JavaScript, not the TypeScript sources', () => {
    expect(existsSync(join(installed, 'dist', 'cli', 'main.js'))).toBe(true)
    expect(existsSync(join(installed, 'dist', 'clients', 'pilot', 'pilot.sbatch.tmpl'))).toBe(true)
    expect(existsSync(join(installed, 'src'))).toBe(false)
    expect(existsSync(join(installed, 'config', 'broker.example.yaml'))).toBe(true)
    expect(existsSync(join(installed, 'packaging', 'condor-token-broker.service'))).toBe(true)
  })

  it('--version prints the package version', () => {
    const r = spawnSync(bin, ['--version'], { cwd: dir, env: cleanEnv(), encoding: 'utf8', timeout: 30_000 })
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe(`${VERSION}\n`)
    expect(r.status).toBe(0)
  })

  it('serve starts on loopback, answers /healthz and stops on SIGTERM', async () => {
    const port = await freePort()
    const env = cleanEnv({
      CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(await freePort()),
      CTB_POLICY_DIR: join(installed, 'policies'), CTB_POLICY_WATCH: 'false', CTB_TRUST_DOMAIN: 'pool.example.org',
    })
    const child = spawn(bin, ['serve'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', (c) => { err += c })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`serve did not start: ${err.slice(-800)}`)), 30_000)
        child.stdout.on('data', (c: Buffer) => { if (c.toString().includes('serving at')) { clearTimeout(t); resolve() } })
        child.once('exit', (code) => { clearTimeout(t); reject(new Error(`serve exited ${code}: ${err.slice(-800)}`)) })
      })
      const r = await healthz(`https://127.0.0.1:${port}`, readFileSync(join(dir, 'data', 'tls', 'dev-ca.crt')))
      expect(r.status).toBe(200)
      expect(JSON.parse(r.text)).toEqual({ status: 'ok' })
      // The bin's first line gave Node its heap options and glibc its arena limit (env -S execs node in the
      // same process).
      const argv = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0')
      expect(argv).toEqual(expect.arrayContaining(['--max-semi-space-size=4', '--no-allocation-site-pretenuring']))
      expect(readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0')).toContain('MALLOC_ARENA_MAX=2')
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGTERM')
    }
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))])
    expect(code).toBe(0)
  }, 60_000)
})
