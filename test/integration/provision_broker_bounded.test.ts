import { afterEach, describe, expect, it } from 'vitest'
import { BrokerCallError, BrokerClient, fetchWithCa, MAX_PROVISION_ANSWER_BYTES } from '../../src/clients/provision/broker_client.ts'
import { answeringHttps, endlessAnswer } from '../support/answering_https.ts'

// Provisioning's own fetch (the one the CLI uses) against an answer that never ends: its 30 s timeout bounds
// how long it streams, not how much arrives in that time, so the read itself is bounded.
const closers: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of closers.splice(0)) await c() })

describe('provisioning reads a bounded answer', () => {
  it(`stops past ${MAX_PROVISION_ANSWER_BYTES} bytes with a refusal naming the call`, async () => {
    const server = await answeringHttps(endlessAnswer(200, 256 * 1024 * 1024))
    closers.push(server.close)
    const client = new BrokerClient({ url: server.url, bearer: 'x', fetch: fetchWithCa(server.caFile) })
    const err = await client.metadata().then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(BrokerCallError)
    expect((err as Error).message).toBe(`broker metadata: 200 invalid_response: the answer is larger than ${MAX_PROVISION_ANSWER_BYTES} bytes`)
    expect(server.sent()).toBeLessThan(64 * 1024 * 1024)
  })

  // The agent's 30 s body timeout is the longest pause between chunks: an answer of a byte every 100 ms never
  // trips it, and at 8 MiB would hold the render for over nine days. Here the budget is 1 s.
  it('gives up on an answer still trickling in when its time budget is spent', async () => {
    const server = await answeringHttps((res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      const timer = setInterval(() => res.write(' '), 100)
      res.on('close', () => clearInterval(timer))
    })
    closers.push(server.close)
    const client = new BrokerClient({ url: server.url, bearer: 'x', fetch: fetchWithCa(server.caFile, 1000) })
    const started = Date.now()
    const err = await client.metadata().then(() => undefined, (e: unknown) => e)
    expect(Date.now() - started).toBeLessThan(4000)
    expect((err as Error).message).toBe('broker metadata: no complete answer within 1000 ms')
  }, 15_000)

  // The CLI turns only a broker refusal or a `<call>: <why>` error into its one-line message; any other error
  // is taken for a bug and shown with its stack. An answer cut off mid-body is the broker's fault, not ours.
  it('names the call when the answer breaks off before its end', async () => {
    const server = await answeringHttps((res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' })
      res.write('{"issuer":', () => res.socket?.destroy())
    })
    closers.push(server.close)
    const client = new BrokerClient({ url: server.url, bearer: 'x', fetch: fetchWithCa(server.caFile, 5000) })
    const err = await client.metadata().then(() => undefined, (e: unknown) => e)
    expect((err as Error).message).toBe('broker metadata: the answer broke off before its end')
  }, 15_000)
})
