import { mkdtempSync, readFileSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exchangeForm, IDTOKEN, startE2e, type E2e } from '../support/broker_e2e.ts'

const LIMIT = 5

/**
 * The address limit on the socket `serve` listens on: refused unauthenticated requests from one address
 * count, and once over the limit the address is refused with 429 before its body is read or IAM asked.
 * Requests that verify do not count.
 */
describe('refused unauthenticated requests from one address', () => {
  let e: E2e
  beforeAll(async () => {
    e = await startE2e({ CTB_RATE_LIMITS_ADDRESS_REQUESTS: String(LIMIT), CTB_RATE_LIMITS_ADDRESS_PER: '1h', CTB_AUDIT_DENIED_AGGREGATE_SECONDS: '3600' })
  })
  afterAll(async () => { await e?.close() })

  it('are refused with 400 up to the limit, then with 429 slow_down and Retry-After; verified ones never count', async () => {
    const robot = await e.robot('ctb-cloud-a-provisioner')
    const legit = () => e.post('/token', exchangeForm(robot, 'startd', { requested_token_type: IDTOKEN, host: 'ep-17.cloud-a.example.org' }))
    // Many verified requests first: they leave the address limit untouched.
    for (let i = 0; i < 3 * LIMIT; i++) expect((await legit()).status).toBe(200)

    const statuses: number[] = []
    for (let i = 0; i < LIMIT; i++) statuses.push((await e.post('/token', exchangeForm(`junk.${i}.x`, 'startd'))).status)
    expect(statuses).toEqual(Array(LIMIT).fill(400))
    // Request LIMIT + 1 is the first refused for its address.
    const over = await e.post('/token', exchangeForm('junk.over.x', 'startd'))
    expect(over.status).toBe(429)
    expect(over.body).toEqual({ error: 'slow_down', error_description: expect.stringMatching(/^too many refused requests from this address; retry after \d+ s$/) })
    expect(over.headers['retry-after']).toMatch(/^[1-9]\d*$/)
    expect(Number(over.headers['retry-after'])).toBeLessThanOrEqual(3600)
    expect(over.headers['cache-control']).toBe('no-store')
    // Behind one address, a verified client is refused too while the block lasts (docs/rate-limits.md).
    expect((await legit()).status).toBe(429)

    // Nobody to name: the 429s are counted for the aggregate, not written one by one.
    const denied = (await e.broker.services.store.query({ limit: 1000, type: 'token.denied' })).records
    expect(denied).toEqual([])
    await e.broker.services.refusals.flush({ force: true })
    const aggregate = (await e.broker.services.store.query({ limit: 1, type: 'token.denied.aggregate' })).records[0]!.event
    expect(aggregate.detail).toMatchObject({ count: LIMIT + 2, byError: { slow_down: 2 } })
  })
})

/**
 * The admin API (and /metrics behind it, and the console's token sign-in) verifies a bearer it is given
 * against IAM like POST /token does: with iam introspection on, each made-up opaque bearer was one
 * introspection call at IAM, and none counted against the address nor was refused when the address was
 * blocked (reproduced against a loopback IAM: 8 junk bearers on /v1/audit, 8 introspections; 4 more once
 * POST /token already answered that address 429). A bearer that does not verify now counts as one refused
 * unauthenticated request, and a blocked address is refused before IAM is asked. A request with no bearer
 * at all (a browser, a scraper not yet given its token) costs nothing and does not count.
 */
describe('refused admin bearers from one address', () => {
  let e: E2e
  beforeAll(async () => {
    e = await startE2e({ CTB_RATE_LIMITS_ADDRESS_REQUESTS: String(LIMIT), CTB_RATE_LIMITS_ADDRESS_PER: '1h', CTB_AUDIT_DENIED_AGGREGATE_SECONDS: '3600' })
  })
  afterAll(async () => { await e?.close() })

  it('count against the address like refused subject tokens, and a blocked address is refused on the admin API', async () => {
    for (let i = 0; i < 2 * LIMIT; i++) expect((await e.get('/v1/audit')).status).toBe(401)
    const statuses: number[] = []
    for (let i = 0; i < LIMIT; i++) statuses.push((await e.get('/v1/audit', { authorization: `Bearer junk-${i}` })).status)
    expect(statuses).toEqual(Array(LIMIT).fill(401))
    const over = await e.get('/v1/audit', { authorization: 'Bearer junk-over' })
    expect(over.status).toBe(429)
    expect(over.body).toEqual({ error: 'slow_down', error_description: expect.stringMatching(/^too many refused requests from this address; retry after \d+ s$/) })
    // One block for the address, whichever endpoint its refusals came from.
    expect((await e.post('/token', exchangeForm('junk.after.x', 'startd'))).status).toBe(429)
  })
})

/**
 * The bootstrap admin token is the operator's way in when IAM cannot help, and it is compared locally: asking
 * about it costs IAM nothing. Refusing it for a blocked address let anyone behind the operator's address (a
 * NAT, the site's proxy) shut the operator out of the admin API, for as long as they kept sending garbage to
 * POST /token, with no way to look at the audit log or revoke anything meanwhile. The block still refuses,
 * before IAM is asked, every bearer that is not the bootstrap token.
 */
describe('the bootstrap admin token from a blocked address', () => {
  let e: E2e
  let bootstrap: string
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctb-boot-'))
    const file = join(dir, 'admin.token')
    e = await startE2e({ CTB_RATE_LIMITS_ADDRESS_REQUESTS: String(LIMIT), CTB_RATE_LIMITS_ADDRESS_PER: '1h', CTB_ADMIN_BOOTSTRAP_TOKEN_FILE: file })
    bootstrap = readFileSync(file, 'utf8').trim()
  })
  afterAll(async () => { await e?.close() })

  it('is still admitted, while every other bearer from that address is refused with 429', async () => {
    for (let i = 0; i <= LIMIT; i++) await e.post('/token', exchangeForm(`junk.${i}.x`, 'startd'))
    expect((await e.post('/token', exchangeForm('junk.blocked.x', 'startd'))).status).toBe(429)
    expect((await e.get('/v1/audit?limit=1', { authorization: `Bearer ${bootstrap}` })).status).toBe(200)
    expect((await e.get('/v1/audit?limit=1', { authorization: `Bearer ${bootstrap.slice(0, -1)}x` })).status).toBe(429)
    expect((await e.get('/v1/audit?limit=1', { authorization: 'Bearer junk-while-blocked' })).status).toBe(429)
  })
})

/**
 * The console's IAM sign-in callback redeems the code it is given at IAM's token endpoint, as the broker's
 * own client. Its pending sign-in is a cookie the browser holds (state, PKCE verifier, nonce), which any
 * client can make up, so each made-up callback was one token request at IAM, with no address limit. A
 * code IAM refuses now counts against the address, and a blocked address is refused before IAM is asked.
 */
describe('console sign-in callbacks that IAM refuses, from one address', () => {
  let e: E2e
  beforeAll(async () => {
    e = await startE2e({ CTB_RATE_LIMITS_ADDRESS_REQUESTS: String(LIMIT), CTB_RATE_LIMITS_ADDRESS_PER: '1h' })
  })
  afterAll(async () => { await e?.close() })

  const callback = (code: string) => new Promise<number>((resolve, reject) => {
    const pending = { state: 'made-up-state', codeVerifier: 'v'.repeat(43), nonce: 'made-up-nonce', expiresAt: Math.floor(Date.now() / 1000) + 600 }
    const cookie = `__Host-ctb-console-login=${Buffer.from(JSON.stringify(pending)).toString('base64url')}`
    const req = request(`${e.broker.url}/console/callback?state=made-up-state&code=${code}`, { ca: e.ca, headers: { cookie } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })

  it('count against the address, and a blocked address is refused before IAM is asked', async () => {
    const statuses: number[] = []
    for (let i = 0; i < LIMIT; i++) statuses.push(await callback(`junk-${i}`))
    expect(statuses).toEqual(Array(LIMIT).fill(400))
    expect(await callback('junk-over')).toBe(429)
    expect((await e.post('/token', exchangeForm('junk.after.x', 'startd'))).status).toBe(429)
  })
})
