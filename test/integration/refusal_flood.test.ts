import { Agent, request } from 'node:https'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exchangeForm, IDTOKEN, startE2e, type E2e } from '../support/broker_e2e.ts'

const GARBAGE = 3000
const CONCURRENCY = 48
const LEGIT = 24

/**
 * Unauthenticated garbage must not starve issuance: refusals with nobody to name are counted, not written
 * one by one into the bounded audit queue that issuances wait on. The queue here holds only 8 waiting
 * writes, so one durable record per garbage request would refuse legitimate issuances under this flood.
 */
describe('a flood of garbage requests on the serve socket', () => {
  let e: E2e
  let agent: Agent
  beforeAll(async () => {
    e = await startE2e({ CTB_AUDIT_GROUP_COMMIT_MAX_PENDING: '8', CTB_AUDIT_DENIED_AGGREGATE_SECONDS: '1' })
    agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY + 4, ca: e.ca })
  })
  afterAll(async () => {
    agent?.destroy()
    await e?.close()
  })

  const post = (body: string, contentType: string) => new Promise<number>((resolve, reject) => {
    const req = request(`${e.broker.url}/token`, { method: 'POST', agent, headers: { 'content-type': contentType }, timeout: 20_000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end(body)
  })
  const FORM = 'application/x-www-form-urlencoded'
  const form = (f: Record<string, string | string[]>) => {
    const p = new URLSearchParams()
    for (const [k, v] of Object.entries(f)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x)
    return p.toString()
  }

  it('leaves every legitimate issuance succeeding, and records the garbage as an aggregate', async () => {
    const robot = await e.robot('ctb-cloud-a-provisioner')
    const store = e.broker.services.store
    const deniedBefore = (await store.query({ limit: 1000, type: 'token.denied' })).records.length

    let next = 0
    const garbageStatuses: number[] = []
    const worker = async () => {
      for (let i = next++; i < GARBAGE; i = next++) {
        const body = i % 3 === 2
          ? JSON.stringify({ subject_token: `junk-${i}` })
          : form(exchangeForm(i % 3 === 0 ? `junk.${i}.x` : `${robot.slice(0, -8)}AAAAAAAA`, 'startd'))
        garbageStatuses.push(await post(body, i % 3 === 2 ? 'application/json' : FORM))
      }
    }
    const legit = async () => {
      const statuses: number[] = []
      for (let i = 0; i < LEGIT; i++) {
        statuses.push(await post(form(exchangeForm(robot, 'startd', { requested_token_type: IDTOKEN, host: 'ep-17.cloud-a.example.org' })), FORM))
      }
      return statuses
    }
    const [legitStatuses] = await Promise.all([legit(), ...Array.from({ length: CONCURRENCY }, worker)])

    expect(legitStatuses).toEqual(Array(LEGIT).fill(200))
    expect(garbageStatuses).toHaveLength(GARBAGE)
    expect(new Set(garbageStatuses)).toEqual(new Set([400]))
    // No individual record per garbage request.
    expect((await store.query({ limit: 1000, type: 'token.denied' })).records.length).toBe(deniedBefore)
    expect((await store.query({ limit: 1000, type: 'token.issued' })).records.length).toBeGreaterThanOrEqual(LEGIT)

    // The aggregate flushes every second: wait (bounded) until it has counted all the garbage.
    let counted = 0
    let aggregates = 0
    for (let tries = 0; tries < 50 && counted < GARBAGE; tries++) {
      await new Promise((r) => setTimeout(r, 200))
      const records = (await store.query({ limit: 1000, type: 'token.denied.aggregate' })).records
      aggregates = records.length
      counted = records.reduce((n, r) => n + ((r.event.detail as { count: number }).count), 0)
    }
    expect(counted).toBe(GARBAGE)
    // A handful of records for thousands of refusals: the flood cost the audit log almost nothing.
    expect(aggregates).toBeLessThan(60)
    const last = (await store.query({ limit: 1, type: 'token.denied.aggregate' })).records[0]!.event
    expect(last.detail).toMatchObject({ topClients: [{ address: expect.stringMatching(/127\.0\.0\.1/) }] })
  })
})
