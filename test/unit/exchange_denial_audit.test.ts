import { describe, expect, it } from 'vitest'
import { exchangeToken, type ExchangeDeps } from '../../src/issuance/exchange.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import type { VerifiedSubject } from '../../src/iam/subject.ts'

const subject: VerifiedSubject = { iss: 'https://iam.example.org/', sub: 'u1', groups: [], scopes: [], exp: 2_000_000_000, claims: {} }
const form = () => ({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'eyJ.x.y', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', role: 'startd' })

function deps(record: ExchangeDeps['audit']['record'], logged: string[]): ExchangeDeps {
  return {
    iam: { verify: async () => subject },
    decide: () => ({ allow: false, error: 'unauthorized_client', reason: 'no rule grants startd', ruleId: 'r1' }),
    issue: async () => { throw new Error('must not issue') },
    narrow: async () => { throw new Error('must not narrow') },
    blocks: { blockedCaller: () => undefined, blockedIdentity: () => undefined },
    audit: { record },
    refusals: { note() { throw new Error('a verified caller is never only counted') } },
    clock: fixedClock(1_800_000_000),
    log: { info() {}, warn() {}, error: (msg) => { logged.push(msg) } },
  }
}

describe('exchangeToken denials', () => {
  it('records the denial with the rule and reason', async () => {
    const events: unknown[] = []
    await expect(exchangeToken(form, { requestId: 'q1' }, deps(async (event) => { events.push(event) }, []))).rejects.toMatchObject({ error: 'unauthorized_client' })
    expect(events).toEqual([expect.objectContaining({ type: 'token.denied', requestId: 'q1', role: 'startd', policyRule: 'r1', decision: 'deny', reason: 'unauthorized_client: no rule grants startd' })])
  })

  it('keeps the refusal and logs when the denial cannot be recorded', async () => {
    const logged: string[] = []
    await expect(exchangeToken(form, { requestId: 'q2' }, deps(async () => { throw new Error('disk full') }, logged))).rejects.toMatchObject({ error: 'unauthorized_client' })
    expect(logged).toEqual(['could not audit a denial'])
  })
})

describe('exchangeToken and revocations that block issuance', () => {
  const allow = { allow: true as const, ruleId: 'r2', role: 'startd', tokenKind: 'idtoken' as const, identity: 'startd-ep1@eps.pool.example.org', scopes: ['READ'], audience: [], lifetime: 60, site: 'cloud-a' }

  function blocking(blocks: ExchangeDeps['blocks'], events: unknown[], issued: string[]): ExchangeDeps {
    return {
      ...deps(async (e) => { events.push(e) }, []),
      decide: () => allow,
      issue: async (d) => { issued.push(d.identity); return { token: 't', expiresIn: 60, scope: 'condor:/READ' } },
      blocks,
    }
  }

  it('refuses a revoked caller before the policy is asked, and records the refusal', async () => {
    const events: unknown[] = []
    const issued: string[] = []
    const d = blocking({ blockedCaller: (c) => c.sub === 'u1' ? 'this caller has been revoked' : undefined, blockedIdentity: () => undefined }, events, issued)
    await expect(exchangeToken(form, { requestId: 'q3' }, d)).rejects.toMatchObject({ error: 'unauthorized_client', description: 'this caller has been revoked' })
    expect(issued).toEqual([])
    expect(events).toEqual([expect.objectContaining({ type: 'token.denied', caller: expect.objectContaining({ sub: 'u1' }), reason: 'unauthorized_client: this caller has been revoked' })])
  })

  it('refuses a revoked identity after the decision, recording the rule and the bound site', async () => {
    const events: unknown[] = []
    const issued: string[] = []
    const d = blocking({ blockedCaller: () => undefined, blockedIdentity: (s) => s === allow.identity ? `identity ${s} has been revoked` : undefined }, events, issued)
    await expect(exchangeToken(() => ({ ...form(), site: 'cloud-a' }), { requestId: 'q4' }, d)).rejects.toMatchObject({ error: 'unauthorized_client' })
    expect(issued).toEqual([])
    expect(events).toEqual([expect.objectContaining({ policyRule: 'r2', site: 'cloud-a', reason: `unauthorized_client: identity ${allow.identity} has been revoked` })])
  })

  it('issues when nothing blocks', async () => {
    const issued: string[] = []
    await exchangeToken(form, { requestId: 'q5' }, blocking({ blockedCaller: () => undefined, blockedIdentity: () => undefined }, [], issued))
    expect(issued).toEqual([allow.identity])
  })
})
