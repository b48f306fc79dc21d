import { describe, expect, it } from 'vitest'
import { BrokerCallError, type BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { teardown } from '../../src/clients/provision/teardown.ts'
import type { ManifestToken } from '../../src/clients/provision/render.ts'

// Teardown runs on the operator's machine, whose clock is not the broker's nor the daemons'. It used to leave out
// a daemon token whose manifest exp was more than 60 s behind the operator's clock and report "nothing to
// revoke": with that clock 10 minutes fast, a token with 5 minutes left (accepted by every daemon) was never
// revoked, and teardown exited 0. Nothing may be skipped on the client's judgement; a token that looks expired
// is sent without exp, so the broker holds the entry as long as its own audit record says (or its horizon).
describe('provision teardown judged on the operator\'s clock', () => {
  const BROKER_NOW = 1_800_000_000
  const FAST_CLIENT_NOW = BROKER_NOW + 600
  const token = (jti: string, exp: number): ManifestToken => ({ jti, sub: `${jti}@pool`, role: 'startd', node: 'n1', kind: 'idtoken', exp })

  it('still revokes a token the operator\'s fast clock thinks expired, without sending that exp', async () => {
    const sent: Array<{ jti: string; exp?: number }> = []
    const broker = {
      revokeJti: async (jti: string, _reason: string, exp?: number) => { sent.push({ jti, ...(exp !== undefined ? { exp } : {}) }) },
      revokePilotEnrolment: async () => undefined,
      revokeCertificate: async () => undefined,
    } as unknown as BrokerClient
    // 300 s left on the broker's (and the daemons') clock; 300 s past on the operator's.
    const r = await teardown({ tokens: [token('alive', BROKER_NOW + 300), token('later', BROKER_NOW + 3600)], certificates: [], template: { name: 't', version: '1' } } as never, broker, 'teardown of t', FAST_CLIENT_NOW)
    expect(sent).toEqual([{ jti: 'alive' }, { jti: 'later', exp: BROKER_NOW + 3600 }])
    expect(r.revokedTokens).toEqual(['alive', 'later'])
    expect(r.failures).toEqual([])
  })

  // The other way round: the operator's clock slow, an exp the broker finds more than 60 s past looks live here
  // and is sent; the broker refuses that exp (400 invalid_request). The jti is then sent again without it, and
  // the broker holds the entry as its record says, instead of the teardown failing on a clock it cannot see.
  it('sends the jti again without exp when the broker refuses the exp as past', async () => {
    const SLOW_CLIENT_NOW = BROKER_NOW - 600
    const sent: Array<{ jti: string; exp?: number }> = []
    const broker = {
      revokeJti: async (jti: string, _reason: string, exp?: number) => {
        sent.push({ jti, ...(exp !== undefined ? { exp } : {}) })
        if (exp !== undefined && exp < BROKER_NOW - 60) throw new BrokerCallError(`revocation of jti ${jti}`, 400, 'invalid_request', `exp ${exp} is more than 60 s in the past`)
      },
      revokePilotEnrolment: async () => undefined,
      revokeCertificate: async () => undefined,
    } as unknown as BrokerClient
    const r = await teardown({ tokens: [token('gone', BROKER_NOW - 300)], certificates: [], template: { name: 't', version: '1' } } as never, broker, 'teardown of t', SLOW_CLIENT_NOW)
    expect(sent).toEqual([{ jti: 'gone', exp: BROKER_NOW - 300 }, { jti: 'gone' }])
    expect(r).toEqual({ revokedTokens: ['gone'], revokedCertificates: [], failures: [] })
  })

  it('still reports a refusal that is not of the exp', async () => {
    const broker = {
      revokeJti: async (jti: string) => { throw new BrokerCallError(`revocation of jti ${jti}`, 403, 'access_denied') },
      revokePilotEnrolment: async () => undefined,
      revokeCertificate: async () => undefined,
    } as unknown as BrokerClient
    const r = await teardown({ tokens: [token('t1', BROKER_NOW + 300)], certificates: [], template: { name: 't', version: '1' } } as never, broker, 'teardown of t', BROKER_NOW)
    expect(r.failures).toEqual(['token t1 (n1): revocation of jti t1: 403 access_denied'])
  })
})
