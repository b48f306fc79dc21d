import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { expect, it } from 'vitest'
import { startE2e } from '../support/broker_e2e.ts'
import { tempDir } from '../support/tmp.ts'

/**
 * On SIGTERM the main listener drains: requests in flight, and connections whose first request is still on
 * the wire, get shutdown_grace_seconds and an answer with `Connection: close`. The Vault-compatible listener
 * (HTCondor's Vault credmon fetching job tokens) was closed with closeAllConnections() instead: whatever it
 * was serving or reading at that moment was reset. It drains like the main one now.
 */
it('the Vault-compatible listener answers a request that arrives during the grace instead of resetting it', async () => {
  const dir = tempDir('ctb-vaultdrain-')
  const file = join(dir, 'broker.yaml')
  writeFileSync(file, `credentials:
  enabled: true
  providers:
    - { name: cms, kind: iam, role: job-credentials }
  vault: { enabled: true, port: 0 }
`)
  const e = await startE2e({ CTB_CONFIG: file })
  const vault = new URL(e.broker.vaultUrl!)
  let closing: Promise<unknown> | undefined
  try {
    const socket = connect({ host: vault.hostname, port: Number(vault.port), ca: e.ca, servername: 'localhost' })
    let received = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => { received += d })
    const ended = new Promise<void>((resolve) => { socket.on('close', () => resolve()); socket.on('error', () => resolve()) })
    await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
    // The request line is on the wire, the rest of the head not yet, when the stop begins.
    socket.write('GET /v1/secret/data/nobody HTTP/1.1\r\nHost: localhost\r\n')
    await new Promise((r) => setTimeout(r, 100))
    closing = e.broker.close({ graceMs: 3_000 })
    await new Promise((r) => setTimeout(r, 200))
    socket.write('X-Vault-Token: made-up\r\n\r\n')
    await Promise.race([ended, new Promise((r) => setTimeout(r, 5_000))])
    expect(received).toMatch(/^HTTP\/1\.1 [1-5]\d\d /)
    expect(received.toLowerCase()).toContain('connection: close')
  } finally {
    await (closing ?? e.broker.close())
    rmSync(e.dir, { recursive: true, force: true })
  }
}, 30_000)
