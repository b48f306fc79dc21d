import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { teardown } from '../../src/clients/provision/teardown.ts'
import type { ManifestToken } from '../../src/clients/provision/render.ts'

// The broker refuses a jti revocation whose exp is more than 60 s past (400 invalid_request): the token has
// expired and the entry would revoke nothing. Teardown of an old manifest sent each daemon token's exp, so every
// expired one would come back as a failure and a non-zero exit. Its exp is not sent: the broker holds the entry as
// long as its own record of the token says, so nothing is skipped on the client's clock.
describe('provision teardown of a manifest whose daemon tokens have expired', () => {
  const NOW = 1_800_000_000
  const token = (jti: string, exp: number): ManifestToken => ({ jti, sub: `${jti}@pool`, role: 'startd', node: 'n1', kind: 'idtoken', exp })

  it('revokes the live ones with their exp and the expired ones without, without a failure', async () => {
    const sent: Array<{ jti: string; exp?: number }> = []
    const broker = {
      revokeJti: async (jti: string, _reason: string, exp?: number) => { sent.push({ jti, ...(exp !== undefined ? { exp } : {}) }) },
      revokePilotEnrolment: async () => undefined,
      revokeCertificate: async () => undefined,
    } as unknown as BrokerClient
    const r = await teardown({ tokens: [token('live', NOW + 600), token('just', NOW - 30), token('old', NOW - 3600)], certificates: [], template: { name: 't', version: '1' } } as never, broker, 'teardown of t', NOW)
    expect(sent).toEqual([{ jti: 'live', exp: NOW + 600 }, { jti: 'just', exp: NOW - 30 }, { jti: 'old' }])
    expect(r).toEqual({ revokedTokens: ['live', 'just', 'old'], revokedCertificates: [], failures: [] })
  })
})
