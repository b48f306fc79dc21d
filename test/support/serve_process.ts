import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'

export const BIN = join(import.meta.dirname, '../../bin/condor-token-broker.js')

/** Starts `condor-token-broker serve` as a child process and resolves once it prints its address. */
export async function startServeProcess(env: NodeJS.ProcessEnv): Promise<ChildProcess & { stderrText(): string; stdoutText(): string }> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  let out = ''
  child.stderr!.on('data', (c) => { err += c })
  child.stdout!.on('data', (c) => { out += c })
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start: ${err.slice(-400)}`)), 30_000)
    child.stdout!.on('data', (c: Buffer) => { if (c.toString().includes('serving at')) { clearTimeout(t); resolve() } })
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`serve exited ${code}: ${err.slice(-400)}`)) })
  })
  return Object.assign(child, { stderrText: () => err, stdoutText: () => out })
}

/** Sends a signal and waits (bounded) for the child to exit. */
export async function stopServeProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((r) => child.once('exit', r))
  child.kill(signal)
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
}
