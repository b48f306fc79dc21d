import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { devIamTrustedIssuer, type DevIamBrokerSettings } from '../src/dev_iam/broker_settings.ts'

const ROOT = join(import.meta.dirname, '..')

/** A child process of the bench: its pid for /proc, and a stop that waits for it to exit. */
export interface BenchProcess {
  pid: number
  child: ChildProcess
  stop(): Promise<void>
}

/**
 * Spawns `args` with node; resolves with the first stdout line matching `ready` once it appears. stderr
 * goes to `logFile` (the broker's access log: a file, as under systemd, not a pipe this process would
 * have to drain on the same two cores as the broker).
 */
export async function spawnNode(args: string[], options: { env?: NodeJS.ProcessEnv; logFile: string; ready: RegExp; what: string; timeoutMs?: number }): Promise<BenchProcess & { line: string }> {
  const fd = openSync(options.logFile, 'a', 0o600)
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', fd] })
  closeSync(fd)
  const tail = () => { try { return readFileSync(options.logFile, 'utf8').slice(-600) } catch { return '' } }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`${options.what} did not start within ${(options.timeoutMs ?? 60_000) / 1000} s: ${tail()}`)), options.timeoutMs ?? 60_000)
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString()
        const hit = out.split('\n').find((l) => options.ready.test(l))
        if (hit !== undefined) { clearTimeout(timer); resolve(hit) }
      })
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${options.what} exited ${code}: ${tail()}`)) })
    })
    child.stdout!.resume()
    return { pid: child.pid!, child, stop, line }
  } catch (err) {
    await stop()
    throw err
  }
}

/** The development IAM in its own process (bench/dev_iam_process.ts), minting tokens for `brokerIssuer`. */
export async function startDevIamProcess(port: number, brokerIssuer: string, logFile: string): Promise<BenchProcess & { settings: DevIamBrokerSettings }> {
  const p = await spawnNode([join(ROOT, 'bench/dev_iam_process.ts'), String(port), brokerIssuer], { logFile, ready: /^\{/, what: 'development IAM' })
  return { ...p, settings: JSON.parse(p.line) as DevIamBrokerSettings }
}

/** The reference oidc-provider in its own process (bench/reference_provider.ts). */
export function startReference(port: number, logFile: string): Promise<BenchProcess> {
  return spawnNode([join(ROOT, 'bench/reference_provider.ts'), String(port)], { logFile, ready: /^reference listening/, what: 'reference oidc-provider' })
}

/**
 * A broker config file trusting the development IAM that runs elsewhere (so serve starts none in its
 * own process), with the broker's client secret beside it.
 */
export function writeBrokerConfig(dir: string, iam: DevIamBrokerSettings, brokerIssuer: string): string {
  const entry = devIamTrustedIssuer(iam, join(dir, 'iam-broker.secret'), { audience: brokerIssuer })
  const file = join(dir, 'broker.yaml')
  writeFileSync(file, stringify({ iam: { issuers: [entry] } }))
  return file
}

export type BrokerEntry = 'src' | 'dist'

/**
 * What the bench runs: the built JavaScript in dist/ (BENCH_ENTRY=dist, the default), as the npm package
 * and the container image do, or the TypeScript sources (BENCH_ENTRY=src), whose every thread also holds
 * Node's type stripper (~17 MB resident each, docs/performance.md).
 */
export const BENCH_ENTRY: BrokerEntry = process.env.BENCH_ENTRY === 'src' ? 'src' : 'dist'

/** Builds dist/ (npm run build) so the bench runs the sources as they are now. */
export function buildDist(): void {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/build.ts')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] })
  if (r.status !== 0) throw new Error(`npm run build failed: ${r.stderr.toString().trim().split('\n').at(-1)}`)
}

/** What the installed command's first line sets: environment (`NAME=value`) and Node options. */
export interface BrokerLaunch { env: Record<string, string>; nodeOptions: string[] }

/**
 * How the installed command starts Node: the first line of bin/condor-token-broker.js
 * (`#!/usr/bin/env -S [NAME=value ...] node <options>`), so the bench measures the broker as npm -g,
 * systemd and the container start it.
 */
export function brokerLaunch(): BrokerLaunch {
  const shebang = readFileSync(join(ROOT, 'bin/condor-token-broker.js'), 'utf8').split('\n', 1)[0]!
  const m = /^#!\/usr\/bin\/env -S (?<env>(?:[A-Z_]+=\S+ )*)node(?<options>( \S+)*)$/.exec(shebang)
  if (!m) throw new Error(`bin/condor-token-broker.js does not start with "#!/usr/bin/env -S [NAME=value ...] node ...": ${shebang}`)
  const env = Object.fromEntries(m.groups!.env!.split(' ').filter((a) => a.length > 0).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]))
  return { env, nodeOptions: m.groups!.options!.split(' ').filter((o) => o.length > 0) }
}

/** The Node options on the installed command's first line. */
export function brokerNodeOptions(): string[] {
  return brokerLaunch().nodeOptions
}

/**
 * `serve` in its own process, with the installed command's environment and Node options (or
 * `nodeOptions` in place of the options: options on the command line win over NODE_OPTIONS, so a
 * variant must replace them); env carries CTB_* overrides and wins over the first line's variables.
 */
export function startBroker(env: NodeJS.ProcessEnv, logFile: string, what = 'broker', entry: BrokerEntry = BENCH_ENTRY, nodeOptions = brokerNodeOptions()): Promise<BenchProcess> {
  return spawnNode([...nodeOptions, join(ROOT, entry === 'src' ? 'src/cli/main.ts' : 'dist/cli/main.js'), 'serve'], { env: { ...brokerLaunch().env, ...env }, logFile, ready: /serving at/, what })
}

/** Runs the CLI to completion; resolves with its exit code and output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c) => { out += c })
    child.stderr.on('data', (c) => { out += c })
    child.once('exit', (code) => resolve({ code: code ?? 1, out: out.trim() }))
  })
}
