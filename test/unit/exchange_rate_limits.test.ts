import { describe, expect, it } from 'vitest'
import { InvalidRequest, TemporarilyUnavailable } from '../../src/errors.ts'
import { exchangeToken, type ExchangeDeps } from '../../src/issuance/exchange.ts'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import type { LimitRefusal } from '../../src/ratelimit/request_limits.ts'

// Where the exchange asks the limits, and what it tells them, with the limits and IAM as fakes.
const subject: VerifiedSubject = { iss: 'https://iam.example.org/', sub: 'u1', groups: [], scopes: [], exp: 2_000_000_000, claims: {} }
const form = (extra: Record<string, string> = {}) => ({
  grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'eyJ.x.y',
  subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', role: 'startd', ...extra,
})
const ADDRESS = '192.0.2.7'

interface Seen { admitted: Array<[string, string | undefined]>; roles: string[]; refusedAddresses: string[]; noted: string[]; records: string[] }

function deps(o: { verify?: () => Promise<VerifiedSubject>; blocked?: LimitRefusal; admit?: LimitRefusal; admitRole?: LimitRefusal; allow?: boolean }, seen: Seen): ExchangeDeps {
  return {
    iam: { verify: o.verify ?? (async () => subject) },
    decide: () => (o.allow
      ? { allow: true, ruleId: 'r2', role: 'startd', tokenKind: 'idtoken', identity: 'startd@pool', scopes: ['ADVERTISE_STARTD'], audience: [], lifetime: 3600 }
      : { allow: false, error: 'unauthorized_client', reason: 'no rule grants startd', ruleId: 'r1' }),
    issue: async () => ({ token: 'minted', expiresIn: 3600, scope: 'ADVERTISE_STARTD' }),
    narrow: async () => { throw new Error('must not narrow') },
    blocks: { blockedCaller: () => undefined, blockedIdentity: () => undefined },
    audit: { record: async (e) => { seen.records.push(`${e.role ?? '-'} ${e.reason ?? ''}`) } },
    refusals: { note: (error) => { seen.noted.push(error) } },
    clock: fixedClock(1_800_000_000),
    log: { info() {}, warn() {}, error() {} },
    limits: {
      limitsCallers: true,
      blockedAddress: () => o.blocked,
      noteRefused: (a) => { if (a) seen.refusedAddresses.push(a) },
      admit: async (caller, role) => { seen.admitted.push([caller.sub, role]); return o.admit },
      admitRole: async (role) => { seen.roles.push(role); return o.admitRole },
    },
  }
}
const fresh = (): Seen => ({ admitted: [], roles: [], refusedAddresses: [], noted: [], records: [] })
const refusal = (record: boolean): LimitRefusal => ({ limit: 'caller', retryAfter: 7, description: 'too many requests from this caller', record })

describe('exchangeToken and rate limits', () => {
  it('refuses a blocked address before reading the body, and counts it without charging the address again', async () => {
    const seen = fresh()
    let read = false
    const d = deps({ blocked: { limit: 'address', retryAfter: 3, description: 'too many refused requests from this address', record: false } }, seen)
    await expect(exchangeToken(() => { read = true; return form() }, { requestId: 'q1', clientAddress: ADDRESS }, d))
      .rejects.toMatchObject({ error: 'slow_down', status: 429, retryAfter: 3 })
    expect(read).toBe(false)
    expect(seen).toEqual({ admitted: [], roles: [], refusedAddresses: [], noted: ['slow_down'], records: [] })
  })

  it('charges the address for a refused unauthenticated request, but not for the broker failing', async () => {
    const seen = fresh()
    await expect(exchangeToken(() => form(), { requestId: 'q2', clientAddress: ADDRESS }, deps({ verify: async () => { throw new InvalidRequest('subject_token is not a well-formed JWT') } }, seen)))
      .rejects.toMatchObject({ status: 400 })
    await expect(exchangeToken(() => form(), { requestId: 'q3', clientAddress: ADDRESS }, deps({ verify: async () => { throw new TemporarilyUnavailable('IAM keys unavailable') } }, seen)))
      .rejects.toMatchObject({ status: 503 })
    expect(seen.refusedAddresses).toEqual([ADDRESS])
    expect(seen.admitted).toEqual([])
  })

  it('charges a verified caller for a malformed or refused request too, and the role for neither', async () => {
    const seen = fresh()
    await expect(exchangeToken(() => form({ lifetime: '1h' }), { requestId: 'q4', clientAddress: ADDRESS }, deps({}, seen))).rejects.toMatchObject({ error: 'invalid_request' })
    await expect(exchangeToken(() => form(), { requestId: 'q5', clientAddress: ADDRESS }, deps({}, seen))).rejects.toMatchObject({ error: 'unauthorized_client' })
    expect(seen.admitted).toEqual([['u1', undefined], ['u1', undefined]])
    // A caller the policy refuses the role must not use up the allowance the role's callers share.
    expect(seen.roles).toEqual([])
    expect(seen.refusedAddresses).toEqual([])
  })

  it('charges the role for a request the policy grants, and refuses it with slow_down once the role is used up', async () => {
    const seen = fresh()
    await expect(exchangeToken(() => form(), { requestId: 'q8' }, deps({ allow: true }, seen))).resolves.toMatchObject({ access_token: 'minted' })
    const roleRefusal: LimitRefusal = { limit: 'role', retryAfter: 9, description: 'too many requests for role "startd"', record: true }
    await expect(exchangeToken(() => form(), { requestId: 'q9' }, deps({ allow: true, admitRole: roleRefusal }, seen))).rejects.toMatchObject({ error: 'slow_down', retryAfter: 9 })
    expect(seen.admitted).toEqual([['u1', undefined], ['u1', undefined]])
    expect(seen.roles).toEqual(['startd', 'startd'])
    expect(seen.records).toEqual(['startd slow_down: too many requests for role "startd"'])
  })

  it('records a limited caller\'s refusal with its role when asked to, and otherwise only counts it', async () => {
    const seen = fresh()
    await expect(exchangeToken(() => form(), { requestId: 'q6' }, deps({ admit: refusal(true) }, seen))).rejects.toMatchObject({ error: 'slow_down', retryAfter: 7 })
    await expect(exchangeToken(() => form(), { requestId: 'q7' }, deps({ admit: refusal(false) }, seen))).rejects.toMatchObject({ error: 'slow_down' })
    expect(seen.records).toEqual(['startd slow_down: too many requests from this caller'])
    expect(seen.noted).toEqual(['slow_down'])
  })
})
