import { rmSync } from 'node:fs'
import { request } from 'node:https'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RunningBroker } from '../../src/server.ts'
import { AT, claimsOf, IDTOKEN, startReplica, TE, type E2e } from '../support/broker_e2e.ts'

/**
 * Reuse detection of pilot token renewal (docs/pilots.md) on a real broker with a real store: the question
 * "was this token already renewed" is answered by the store, so it holds for two brokers on one database
 * (replicas) and for a broker restarted on it. The policy is the shipped hpc-b pilot grant.
 */
export interface ReuseHarness {
  /** The first broker, with its development IAM. */
  start(): Promise<E2e>
  /** Tears down what start() made. */
  stop?(): Promise<void>
  /** Whether a second broker on the same database is supported here (SQLite in one process is). */
  replicas: boolean
}

// Spelled here from the contract, not imported: the wire value must not drift with the code.
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'

export function pilotTokenReuseContract(name: string, h: ReuseHarness): void {
  describe(`pilot token reuse across brokers: ${name}`, () => {
    let a: E2e
    const extra: RunningBroker[] = []
    let job = 7000
    let closed = false
    beforeAll(async () => { a = await h.start() })
    afterAll(async () => {
      for (const b of extra.splice(0)) await b.close().catch(() => {})
      if (closed) rmSync(a.dir, { recursive: true, force: true })
      else await a?.close()
      await h.stop?.()
    })

    async function post(url: string, form: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
      const body = new URLSearchParams(form).toString()
      return new Promise((resolve, reject) => {
        const req = request(`${url}/token`, { method: 'POST', ca: a.ca, headers: { 'content-type': 'application/x-www-form-urlencoded' }, timeout: 10_000 }, (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (c) => { text += c })
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }))
        })
        req.on('timeout', () => req.destroy(new Error('timeout')))
        req.on('error', reject)
        req.end(body)
      })
    }

    async function pilot(): Promise<{ token: string; sub: string }> {
      const robot = await a.robot('ctb-hpc-b-pilot-factory')
      const enrol = await post(a.broker.url, { grant_type: TE, subject_token: robot, subject_token_type: AT, requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1', lifetime: '3600' })
      expect(enrol.status, JSON.stringify(enrol.body)).toBe(200)
      const res = await post(a.broker.url, {
        grant_type: TE, subject_token: enrol.body.access_token as string, subject_token_type: ENROLMENT,
        slurm_job_id: String(++job), node: 'cn01', job_end: String(Math.floor(Date.now() / 1000) + 7200),
      })
      expect(res.status, JSON.stringify(res.body)).toBe(200)
      const token = res.body.access_token as string
      return { token, sub: claimsOf(token).sub as string }
    }

    async function renew(url: string, token: string): Promise<{ status: number; token: string; error?: string }> {
      const res = await post(url, { grant_type: TE, subject_token: token, subject_token_type: IDTOKEN })
      return { status: res.status, token: res.body.access_token as string, ...(typeof res.body.error === 'string' ? { error: res.body.error } : {}) }
    }

    async function renewed(url: string, token: string): Promise<string> {
      const r = await renew(url, token)
      expect(r.status, r.error).toBe(200)
      return r.token
    }

    const subRevocations = async (sub: string) => (await a.broker.services.store.listRevocations()).filter((r) => r.kind === 'sub' && r.value === sub)

    it('a second broker refuses a token the first renewed twice, and the first refuses the chain it renewed', async () => {
      if (!h.replicas) return
      const b = await startReplica(a)
      extra.push(b)
      const p = await pilot()
      const t1 = await renewed(a.broker.url, p.token)
      const t2 = await renewed(a.broker.url, t1)
      expect(await renew(b.url, p.token)).toMatchObject({ status: 400, error: 'invalid_grant' })
      expect(await subRevocations(p.sub)).toHaveLength(1)
      // The first broker reads revocations from the store; make it look now rather than at its next refresh.
      await a.broker.services.revocations.refresh()
      expect(await renew(a.broker.url, t2)).toMatchObject({ status: 400, error: 'invalid_grant' })
    })

    it('the first broker does not trust its memory: a token it holds as newest, renewed meanwhile on the second, forks no chain', async () => {
      if (!h.replicas) return
      const b = extra[0] ?? await startReplica(a).then((r) => { extra.push(r); return r })
      const p = await pilot()
      const t1 = await renewed(a.broker.url, p.token)
      // A thief holding t1 renews it on the second broker, then renews its own chain there.
      const thief = await renewed(b.url, t1)
      const thief2 = await renewed(b.url, thief)
      // The real pilot presents t1 to the first broker, which minted it and holds it as the pilot's newest.
      expect(await renew(a.broker.url, t1)).toMatchObject({ status: 400, error: 'invalid_grant' })
      await b.services.revocations.refresh()
      expect(await renew(b.url, thief2)).toMatchObject({ status: 400, error: 'invalid_grant' })
      const denial = (await a.broker.services.store.query({ type: 'token.denied', limit: 100 })).records
        .map((r) => r.event).find((e) => (e.detail?.reuse as { jti?: string } | undefined)?.jti === claimsOf(t1).jti)
      expect(denial?.detail?.reuse).toEqual({ jti: claimsOf(t1).jti, successor: claimsOf(thief).jti })
    })

    it('keeps detecting reuse after a restart', async () => {
      const p = await pilot()
      const t1 = await renewed(a.broker.url, p.token)
      const t2 = await renewed(a.broker.url, t1)
      // Every broker goes away (stores closed, memory gone); one comes back on the same database.
      for (const b of extra.splice(0)) await b.close()
      await a.broker.close()
      closed = true
      const again = await startReplica(a)
      extra.push(again)
      expect(await renew(again.url, p.token)).toMatchObject({ status: 400, error: 'invalid_grant' })
      expect((await again.services.store.listRevocations()).filter((r) => r.kind === 'sub' && r.value === p.sub)).toHaveLength(1)
      expect(await renew(again.url, t2)).toMatchObject({ status: 400, error: 'invalid_grant' })
    })
  })
}
