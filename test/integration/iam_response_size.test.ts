import { generateKeyPairSync } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { TemporarilyUnavailable } from '../../src/errors.ts'
import { createIamFetch, IAM_MAX_RESPONSE_BYTES } from '../../src/iam/iam_fetch.ts'
import { createIssuerKeys } from '../../src/iam/issuer_keys.ts'
import { silentLogger } from '../../src/lib/logger.ts'

// A JWKS is a few kilobytes (IAM publishes one or two keys). An answer of tens of megabytes is an IAM
// or proxy gone wrong; the broker must stop reading it, not hold it all in memory to parse it.
const TOTAL = 32 * 1024 * 1024
const CHUNK = 64 * 1024

const servers: Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) { s.closeAllConnections(); await new Promise((r) => s.close(r)) }
})

/** Serves a valid JWKS (one EC key, kid k1) padded with whitespace to TOTAL bytes; counts what it wrote. */
async function hugeJwksServer(): Promise<{ url: string; written: () => number; finished: Promise<void> }> {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' })
  const json = JSON.stringify({ keys: [{ ...jwk, kid: 'k1', alg: 'ES256', use: 'sig' }] })
  let written = 0
  let done!: () => void
  const finished = new Promise<void>((r) => { done = r })
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    const pad = Buffer.alloc(CHUNK, 0x20)
    const tail = Buffer.from(json)
    const pump = (): void => {
      while (written + CHUNK + tail.length <= TOTAL) {
        written += CHUNK
        if (!res.write(pad)) { res.once('drain', pump); return }
      }
      written += tail.length
      res.end(tail, done)
    }
    res.on('close', done)
    pump()
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwk`, written: () => written, finished }
}

describe('IAM answers are bounded in size', () => {
  it('refuses a JWKS far larger than any key set and stops reading it', async () => {
    expect(IAM_MAX_RESPONSE_BYTES).toBeLessThan(TOTAL / 4)
    const iam = await hugeJwksServer()
    const keys = createIssuerKeys(iam.url, {
      issuer: 'https://iam.example.org/', fetch: createIamFetch({ timeoutSeconds: 20 }),
      cacheSeconds: 600, cooldownSeconds: 30, timeoutSeconds: 20, maxStaleSeconds: 0, retrySeconds: 5, log: silentLogger,
    })
    const err = await Promise.resolve().then(() => keys({ alg: 'ES256', kid: 'k1' }, { payload: '', signature: '' } as never)).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemporarilyUnavailable)
    await iam.finished
    // The client hung up after the cap; socket buffers let a few megabytes more through, never the whole answer.
    expect(iam.written()).toBeLessThan(TOTAL / 2)
  })
})
