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
