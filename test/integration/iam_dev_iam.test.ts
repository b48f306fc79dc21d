// The IAM adapter over real loopback sockets with its production fetch (undici with timeouts), against
// the development IAM: discovery, JWKS, verification, token exchange, refresh (docs/iam-and-wlcg.md §1.4).
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devIamBrokerSettings, devIamTrustedIssuer } from '../../src/dev_iam/broker_settings.ts'
import { devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import { startDevIam, type RunningDevIam } from '../../src/dev_iam/start_dev_iam.ts'
import { TemporarilyUnavailable } from '../../src/errors.ts'
import { createIamAdapter, type IamAdapter } from '../../src/iam/create_iam_adapter.ts'
import { IamConfigSchema } from '../../src/iam/iam_config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { tempDir } from '../support/tmp.ts'

describe('IAM adapter against the development IAM (production fetch)', () => {
  let devIam: RunningDevIam
  let adapter: IamAdapter

  beforeAll(async () => {
    devIam = await startDevIam({ port: 0 })
    const issuer = devIamTrustedIssuer(devIamBrokerSettings(devIam), join(tempDir(), 'iam-secret'))
    adapter = await createIamAdapter(IamConfigSchema.parse({ issuers: [issuer] }), { log: silentLogger })
  })
  afterAll(async () => {
    adapter?.close()
    await devIam?.close()
  })

  it('verifies a user token, exchanges it for a narrowed token with a kept refresh token, and refreshes', async () => {
    const user = await devIamUserToken(devIam, 'alice', { scope: 'openid profile wlcg wlcg.groups compute.read compute.create offline_access' })
    const subject = await adapter.verifier.verify(user.accessToken)
    expect(subject.iss).toBe(devIam.issuer)
    expect(subject.scopes).toEqual(expect.arrayContaining(['compute.read', 'compute.create']))

    const r = await adapter.exchanger.exchange({
      subjectToken: user.accessToken, subject, scopes: ['compute.read'], audience: ['https://ce.example.org'], offlineAccess: { key: 'alice' },
    })
    expect(r.scopes).toEqual(['compute.read', 'offline_access'])
    expect(r.refreshTokenStored).toBe(true)
    expect(decodeJwt(r.accessToken)).toMatchObject({ sub: subject.sub, aud: 'https://ce.example.org', act: { sub: 'broker' } })
    // The narrowed token is itself an IAM token the verifier accepts.
    await expect(adapter.verifier.verify(r.accessToken)).resolves.toMatchObject({ sub: subject.sub })

    const before = (await adapter.refreshTokens.get('alice'))!.refreshToken
    const refreshed = await adapter.exchanger.refresh('alice', { scopes: ['compute.read'] })
    expect(refreshed.scopes).toEqual(['compute.read'])
    const after = (await adapter.refreshTokens.get('alice'))!.refreshToken
    expect(refreshed.refreshTokenStored).toBe(after !== before)
  })

  it('a silent IAM is cut off by the production fetch within its bound (503, no hang)', async () => {
    // Accepts connections and never answers.
    const sockets = new Set<import('node:net').Socket>()
    const silent: Server = createServer(() => {})
    silent.on('connection', (s) => { sockets.add(s) })
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const port = (silent.address() as AddressInfo).port
    try {
      const a = await createIamAdapter(IamConfigSchema.parse({
        issuers: [{ issuer: `http://127.0.0.1:${port}/`, development: true }], timeout_seconds: 0.5, jwks_timeout_seconds: 0.5,
      }), { log: silentLogger })
      const token = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: `http://127.0.0.1:${port}/` })).toString('base64url')}.c2ln`
      const t0 = performance.now()
      const err = await a.verifier.verify(token).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(TemporarilyUnavailable)
      expect(performance.now() - t0).toBeLessThan(3000)
      a.close()
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => silent.close(() => r()))
    }
  })
})
