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

/**
 * The form of a token exchange for a startd on ep-1.cloud-a, its subject token fetched from the serve
 * process's development IAM for the cloud-a provisioner robot.
 */
export async function startdExchangeBody(iamPort: number): Promise<string> {
  const iam = await fetch(`http://127.0.0.1:${iamPort}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('ctb-cloud-a-provisioner:ctb-cloud-a-provisioner-secret').toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'wlcg' }),
  })
  const subjectToken = ((await iam.json()) as { access_token: string }).access_token
  return new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', role: 'startd', host: 'ep-1.cloud-a.example.org' }).toString()
}
