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
})
