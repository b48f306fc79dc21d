import { describe, expect, it } from 'vitest'
import { BrokerCallError, BrokerClient, PROVISION_RETRY, type Fetch } from '../../src/clients/provision/broker_client.ts'

// A broker that cannot serve for a moment (its audit store out of reach, IAM down, its queue full) answers
// 503 temporarily_unavailable (RFC 6749 §4.1.2.1), with Retry-After in delay-seconds (RFC 9110 §10.2.3):
// nothing was issued, and the request may be sent again. Provisioning does so a bounded number of times,
// waiting what the broker asks (within a cap); any other refusal ends the call at once, as before.

const JTI_TOKEN = `x.${Buffer.from('{"jti":"j-1"}').toString('base64url')}.y`
const OK = { status: 200, body: { access_token: JTI_TOKEN, expires_in: 60 } }
const UNAVAILABLE = { status: 503, body: { error: 'temporarily_unavailable', error_description: 'try again shortly' } }

type Reply = { status: number; body: unknown; retryAfter?: string }

function scripted(replies: Reply[]) {
  const slept: number[] = []
  let calls = 0
  const fetch: Fetch = async () => {
    const r = replies[Math.min(calls, replies.length - 1)]!
    calls++
    return {
      status: r.status,
      headers: { get: (name: string) => (name.toLowerCase() === 'retry-after' ? r.retryAfter ?? null : null) },
      text: async () => JSON.stringify(r.body),
    }
  }
  const client = new BrokerClient({ url: 'https://broker.example.org', bearer: 'x', fetch, sleep: async (ms) => { slept.push(ms) } })
  return { client, fetch, slept, calls: () => calls }
}

describe('provisioning retries a 503 from the broker, bounded', () => {
  it('waits the Retry-After it was given, then gets the token', async () => {
    const s = scripted([{ ...UNAVAILABLE, retryAfter: '3' }, OK])
    expect(await s.client.daemonToken('startd', 'ep-1.example.org')).toEqual({ token: JTI_TOKEN, expiresIn: 60 })
    expect(s.slept).toEqual([3000])
    expect(s.calls()).toBe(2)
  })

  it('waits the default delay without a Retry-After, or with one that is neither delay-seconds nor an HTTP-date', async () => {
    const s = scripted([UNAVAILABLE, { ...UNAVAILABLE, retryAfter: 'in a minute' }, OK])
    await s.client.daemonToken('startd', 'ep-1.example.org')
    expect(s.slept).toEqual([PROVISION_RETRY.defaultDelaySeconds * 1000, PROVISION_RETRY.defaultDelaySeconds * 1000])
  })

  // RFC 9110 §10.2.3 allows an HTTP-date, which a proxy or load balancer in front of the broker may send.
  // Wed, 21 Oct 2026 07:28:00 GMT is 1792567680 s after the epoch (date -u -d); the clock reads 12 s before it.
  it('waits until the HTTP-date a Retry-After names, within the same cap', async () => {
    const s = scripted([{ ...UNAVAILABLE, retryAfter: 'Wed, 21 Oct 2026 07:28:00 GMT' }, { ...UNAVAILABLE, retryAfter: 'Thu, 22 Oct 2026 07:28:00 GMT' }, OK])
    const client = new BrokerClient({ url: 'https://broker.example.org', bearer: 'x', fetch: s.fetch, sleep: async (ms) => { s.slept.push(ms) }, now: () => 1_792_567_668_000 })
    await client.daemonToken('startd', 'ep-1.example.org')
    expect(s.slept).toEqual([12_000, PROVISION_RETRY.maxDelaySeconds * 1000])
  })

  it('tells whoever runs it about each wait before it begins', async () => {
    const notes: unknown[] = []
    const s = scripted([{ ...UNAVAILABLE, retryAfter: '3' }, { ...UNAVAILABLE, retryAfter: '86400' }, OK])
    const client = new BrokerClient({ url: 'https://broker.example.org', bearer: 'x', fetch: s.fetch, sleep: async () => {}, onRetry: (w) => notes.push(w) })
    await client.daemonToken('startd', 'ep-1.example.org')
    expect(notes).toEqual([
      { method: 'POST', path: '/token', attempt: 2, attempts: PROVISION_RETRY.attempts, seconds: 3 },
      { method: 'POST', path: '/token', attempt: 3, attempts: PROVISION_RETRY.attempts, seconds: PROVISION_RETRY.maxDelaySeconds },
    ])
  })

  it('caps a long Retry-After: a day-long wait would hold the render', async () => {
    const s = scripted([{ ...UNAVAILABLE, retryAfter: '86400' }, OK])
    await s.client.daemonToken('startd', 'ep-1.example.org')
    expect(s.slept).toEqual([PROVISION_RETRY.maxDelaySeconds * 1000])
    expect(PROVISION_RETRY.maxDelaySeconds).toBeLessThan(86400)
  })

  it('gives up after its attempts with the broker\'s own 503 refusal', async () => {
    const s = scripted([{ ...UNAVAILABLE, retryAfter: '1' }])
    const err = await s.client.daemonToken('startd', 'ep-1.example.org').then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(BrokerCallError)
    expect(err).toMatchObject({ status: 503, error: 'temporarily_unavailable' })
    expect(s.calls()).toBe(PROVISION_RETRY.attempts)
    expect(s.slept).toHaveLength(PROVISION_RETRY.attempts - 1)
    expect(PROVISION_RETRY.attempts).toBeGreaterThan(1)
    expect(PROVISION_RETRY.attempts).toBeLessThanOrEqual(10)
  })

  it.each([
    [500, 'server_error'],
    [400, 'invalid_target'],
    [403, 'access_denied'],
    [429, 'slow_down'],
  ])('does not retry a %i: the broker broke or refused, and asking again would not change that', async (status, error) => {
    const s = scripted([{ status, body: { error }, retryAfter: '1' }, OK])
    const err = await s.client.daemonToken('startd', 'ep-1.example.org').then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ status, error })
    expect(s.calls()).toBe(1)
    expect(s.slept).toEqual([])
  })

  it('retries a certificate request and an admin call the same way', async () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
    const cert = scripted([{ ...UNAVAILABLE, retryAfter: '2' }, { status: 201, body: { certificate: pem, serial: '01', not_after: 1 } }])
    expect(await cert.client.certificate({ csr: 'c', role: 'startd', dns: ['ep-1.example.org'], ip: [] })).toEqual({ certificate: pem, serial: '01', notAfter: 1 })
    expect(cert.slept).toEqual([2000])
    const revoke = scripted([{ ...UNAVAILABLE, retryAfter: '2' }, { status: 200, body: {} }])
    await revoke.client.revokeJti('j-1', 'render failed')
    expect(revoke.calls()).toBe(2)
  })
})

// A failed render takes back what it was issued, one revocation per token and certificate; a teardown does
// the same from a manifest. When the broker's store is down, each of those calls would wait out the whole
// retry budget again: a hundred items at three waits each held the operator's terminal for many minutes
// (a signal does not cut a revocation short). Once one call has met 503 on every attempt, the broker is known
// to be down: later calls ask once each, until an answer other than 503 shows it back.
describe('a broker that stayed 503 through a whole call is asked once per call after that', () => {
  it('does not wait again for each later call, and retries again once the broker has answered', async () => {
    const s = scripted([{ ...UNAVAILABLE, retryAfter: '1' }])
    const fails = () => s.client.revokeJti('j-1', 'render failed').then(() => undefined, (e: unknown) => e)
    expect(await fails()).toMatchObject({ status: 503 })
    expect(s.calls()).toBe(PROVISION_RETRY.attempts)
    for (let i = 0; i < 5; i++) expect(await fails()).toMatchObject({ status: 503 })
    expect(s.calls()).toBe(PROVISION_RETRY.attempts + 5)
    expect(s.slept).toHaveLength(PROVISION_RETRY.attempts - 1)
  })

  it('retries a 503 as before once an answer other than 503 came back', async () => {
    const s = scripted([
      ...Array.from({ length: PROVISION_RETRY.attempts }, () => ({ ...UNAVAILABLE, retryAfter: '1' })),
      { status: 200, body: {} },
      { ...UNAVAILABLE, retryAfter: '2' },
      { status: 200, body: {} },
    ])
    await s.client.revokeJti('j-1', 'x').catch(() => undefined)
    await s.client.revokeJti('j-2', 'x')
    await s.client.revokeJti('j-3', 'x')
    expect(s.calls()).toBe(PROVISION_RETRY.attempts + 3)
    expect(s.slept.at(-1)).toBe(2000)
  })
})
