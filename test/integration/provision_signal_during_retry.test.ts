import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'

// provision render retries a broker's 503 after its Retry-After (docs/provisioning.md), up to 30 s a wait.
// Ctrl-C is the operator saying "stop now": render holds the signal only so that what it was issued gets
// revoked (nothing is cut off between two broker calls), not to sit out a wait for a broker that is down.
// A broker on loopback that answers every request 503 with Retry-After: 30 (RFC 9110 §10.2.3).

const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
let dir: string
let server: Server
let url: string
let asked = 0
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ctb-provision-503-'))
  const tls = await ensureDevTls(dir)
  server = createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, (_req, res) => {
    asked++
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '30', 'cache-control': 'no-store' })
    res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: 'the broker cannot record requests right now, so nothing was issued; try again shortly' }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  writeFileSync(join(dir, 'bt'), 'x'.repeat(40) + '\n', { mode: 0o600 })
  writeFileSync(join(dir, 'inputs.yaml'), 'trust_domain: pool.example.org\niam_issuer: https://iam.example.org/\nstartd_count: 1\npilot_nodes: 1\n')
})
afterAll(async () => {
  server?.closeAllConnections()
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
  if (dir) rmSync(dir, { recursive: true, force: true })
})

it('ends at once on SIGINT while it waits out a 503\'s Retry-After, sending no further request', async () => {
  const child = spawn(process.execPath, ['src/cli/main.ts', 'provision', 'render', EXAMPLE, '--inputs', join(dir, 'inputs.yaml'),
    '--broker', url, '--ca-file', join(dir, 'dev-ca.crt'), '--out', join(dir, 'out')],
  { env: { ...process.env, BEARER_TOKEN_FILE: join(dir, 'bt') }, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr!.setEncoding('utf8').on('data', (c: string) => { err += c })
  const exit = new Promise<number | string | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)))
  try {
    for (let i = 0; asked === 0; i++) {
      if (i > 1500) throw new Error(`render never asked the broker: ${err}`)
      await new Promise((r) => setTimeout(r, 10))
    }
    // Into the wait: the 503 has been answered and read.
    await new Promise((r) => setTimeout(r, 500))
    const signalledAt = Date.now()
    child.kill('SIGINT')
    const code = await Promise.race([exit, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), 10_000))])
    expect(code).toBe(130)
    expect(Date.now() - signalledAt).toBeLessThan(10_000)
  } finally {
    child.kill('SIGKILL')
  }
  expect(asked).toBe(1)
  // The wait is said on stderr as it begins: an operator looking at a silent terminal for up to 30 s per call
  // cannot tell a broker that asked for time from a render that hangs. (Render first fetches the pool CA.)
  expect(err).toMatch(/^condor-token-broker: the broker answered 503 temporarily_unavailable to GET \/v1\/ca\/certificate; asking again in 30 s \(attempt 2 of 4\)\n/)
  expect(err).toMatch(/condor-token-broker: render stopped by SIGINT\n$/)
}, 60_000)
