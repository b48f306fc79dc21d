import { RateLimiterMemory } from 'rate-limiter-flexible'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { InvalidToken } from '../../src/errors.ts'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import { RateLimitsConfigSchema } from '../../src/ratelimit/rate_limit_config.ts'
import { RequestLimits, type CounterFactory } from '../../src/ratelimit/request_limits.ts'
import { testDeps } from '../support/broker_deps.ts'
import { CERT_ISS, CERT_OPERATOR, certificateSite, csr } from '../support/certificate_fixture.ts'

// POST /v1/certificates signs with the pool CA and writes an audit record per request: it costs at least
// what POST /token costs, so the limits of `rate_limits:` (docs/rate-limits.md) hold for it too.

const ISS = CERT_ISS
const OPERATOR = CERT_OPERATOR
const OTHER: VerifiedSubject = { ...OPERATOR, sub: 'provisioner-2' }
const memory: CounterFactory = (o) => new RateLimiterMemory(o)

async function build(rateLimits: unknown) {
  const limits = new RequestLimits(RateLimitsConfigSchema.parse(rateLimits), { shared: memory, local: memory }, { auditWindowSeconds: 60 })
  const { service, store } = await certificateSite({ limits })
  const verifyCaller = async (bearer: string) => {
    if (bearer === 'operator-token') return OPERATOR
    if (bearer === 'operator-2-token') return OTHER
    throw new InvalidToken('the IAM access token is not valid', { presented: true })
  }
  const a = createApp(testDeps({ certificates: { service, verifyCaller, limits } }))
  return { a, store }
}

/** From one client address: the node adapter's socket, which app.request() otherwise lacks. */
const from = (address: string) => ({ incoming: { socket: { remoteAddress: address, remotePort: 40000, remoteFamily: 'IPv4' } } })

async function post(a: ReturnType<typeof createApp>, body: unknown, options: { bearer?: string; address?: string } = {}) {
  return a.request('/v1/certificates', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${options.bearer ?? 'operator-token'}` },
    body: JSON.stringify(body),
  }, options.address ? from(options.address) : undefined)
}

const request = async () => ({ csr: await csr(), role: 'schedd', dns: ['ap1.example.org'] })

async function expectSlowDown(res: Response, within: number): Promise<string> {
  expect(res.status).toBe(429)
  const retryAfter = Number(res.headers.get('retry-after'))
  expect(Number.isInteger(retryAfter)).toBe(true)
  expect(retryAfter).toBeGreaterThanOrEqual(1)
  expect(retryAfter).toBeLessThanOrEqual(within)
  expect(res.headers.get('cache-control')).toBe('no-store')
  const body = await res.json() as { error: string; error_description: string }
  expect(body.error).toBe('slow_down')
  return body.error_description
}

describe('POST /v1/certificates under rate_limits', () => {
  it('caller: past requests per window, 429 slow_down with Retry-After; the first refusal is audited, the rest counted', async () => {
    const { a, store } = await build({ caller: { requests: 2, per: 60 } })
    expect((await post(a, await request())).status).toBe(201)
    // A dry run is a request of the caller too (it costs an IAM verification and the holds look-up).
    expect((await post(a, { role: 'schedd', dns: ['ap1.example.org'], dry_run: true })).status).toBe(200)
    expect(await expectSlowDown(await post(a, await request()), 60)).toMatch(/^too many requests from this caller: at most 2 per 60 s; retry after \d+ s$/)
    await expectSlowDown(await post(a, await request()), 60)
    // Another caller has its own allowance.
    expect((await post(a, await request(), { bearer: 'operator-2-token' })).status).toBe(201)

    const denied = (await store.query({ limit: 10, type: 'certificate.denied' })).records.map((r) => r.event)
    expect(denied).toHaveLength(1)
    expect(denied[0]).toMatchObject({ decision: 'deny', caller: { iss: ISS, sub: 'provisioner' } })
    expect(denied[0]!.reason).toMatch(/^slow_down: too many requests from this caller/)
    expect((await store.query({ limit: 10, type: 'certificate.issued' })).records).toHaveLength(2)
  })

  it('a malformed body of a verified caller counts against the caller too', async () => {
    const { a } = await build({ caller: { requests: 1, per: 60 } })
    expect((await post(a, { role: 'schedd' })).status).toBe(400)
    await expectSlowDown(await post(a, await request()), 60)
  })

  it('roles.<name>: past the role\'s allowance, all callers together, 429', async () => {
    const { a } = await build({ roles: { schedd: { requests: 1, per: 60 } } })
    expect((await post(a, await request())).status).toBe(201)
    expect(await expectSlowDown(await post(a, await request(), { bearer: 'operator-2-token' }), 60)).toMatch(/^too many requests for role 'schedd'/)
  })

  it('a refusal by the policy does not use up the role', async () => {
    const { a } = await build({ role: { requests: 1, per: 60 } })
    expect((await post(a, { ...(await request()), dns: ['evil.example.net'] })).status).toBe(400)
    expect((await post(a, await request())).status).toBe(201)
  })

  it('address: after refused unauthenticated requests, the address gets 429 before its token is checked', async () => {
    const { a } = await build({ address: { requests: 2, per: 10 } })
    const addr = '192.0.2.7'
    expect((await post(a, await request(), { bearer: 'forged', address: addr })).status).toBe(401)
    expect((await post(a, await request(), { bearer: 'forged', address: addr })).status).toBe(401)
    await expectSlowDown(await post(a, await request(), { address: addr }), 10)
    // Another address is not held back.
    expect((await post(a, await request(), { address: '192.0.2.8' })).status).toBe(201)
  })

  it('with no limit configured, nothing is refused', async () => {
    const { a } = await build({})
    for (let i = 0; i < 5; i++) expect((await post(a, await request())).status).toBe(201)
  })
})
