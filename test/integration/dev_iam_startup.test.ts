// Starting the development IAM: HTTPS with the broker's development CA, refusals (production, non-loopback,
// bad config), and the settings handed to the broker.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRemoteJWKSet, customFetch, jwtVerify } from 'jose'
import { Agent, fetch as undiciFetch } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devIamBrokerSettings, devIamTrustedIssuer } from '../../src/dev_iam/broker_settings.ts'
import { defaultDevIamConfig } from '../../src/dev_iam/dev_iam_config.ts'
import { devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import { startDevIam, type RunningDevIam } from '../../src/dev_iam/start_dev_iam.ts'
import { OperatorError } from '../../src/errors.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'

describe('development IAM over HTTPS with the broker\'s development certificate', () => {
  let dir: string
  let iam: RunningDevIam
  let tlsFetch: typeof fetch
  let agent: Agent
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ctb-dev-iam-'))
    const tls = await ensureDevTls(join(dir, 'tls'))
    iam = await startDevIam({ tls: { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) } })
    agent = new Agent({ connect: { ca: readFileSync(tls.caFile) } })
    tlsFetch = ((url: string, init?: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher: agent })) as unknown as typeof fetch
  })
  afterAll(async () => {
    await iam?.close()
    await agent?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('serves an https issuer that verifies against the development CA', async () => {
    expect(iam.issuer).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/)
    const doc = await (await tlsFetch(iam.discoveryUrl)).json() as Record<string, unknown>
    expect(doc.issuer).toBe(iam.issuer)
    await expect(fetch(iam.discoveryUrl)).rejects.toThrow() // not trusted without the dev CA
  })

  it('issues a user token over HTTPS that jose verifies against the https JWKS', async () => {
    const { accessToken } = await devIamUserToken(iam, 'alice', { fetch: tlsFetch })
    const jwks = createRemoteJWKSet(new URL(iam.jwksUri), { [customFetch]: tlsFetch })
    const { payload } = await jwtVerify(accessToken, jwks, { issuer: iam.issuer, algorithms: ['RS256'] })
    expect(payload['wlcg.groups']).toEqual(['/cms', '/ctb-admins', '/htc/users'])
  })
})

describe('development IAM refusals', () => {
  it('refuses to start with a production configuration', async () => {
    await expect(startDevIam({ production: true })).rejects.toSatisfy((e) => e instanceof OperatorError && /production/.test(e.message))
  })

  it('refuses a non-loopback address', async () => {
    for (const host of ['0.0.0.0', '192.0.2.1', '::']) {
      await expect(startDevIam({ host })).rejects.toSatisfy((e) => e instanceof OperatorError && /loopback/.test(e.message))
    }
  })

  it('refuses an invalid configuration with one line per problem and no secret values', async () => {
    const config = defaultDevIamConfig()
    config.clients.push({ ...config.clients[0]!, client_secret: 'dup-secret-value' })
    config.exchange_policies = [{ rule: 'PERMIT', origin: 'ghost', destination: 'broker' }]
    const err = await startDevIam({ config }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OperatorError)
    expect((err as Error).message).toMatch(/duplicate client_id dev-cli/)
    expect((err as Error).message).toMatch(/exchange_policies\.0\.origin: unknown client ghost/)
    expect((err as Error).message).not.toMatch(/secret-value/)
  })

  it('says loudly that it is a development IAM', async () => {
    const lines: string[] = []
    const iam = await startDevIam({ log: createLogger((l) => lines.push(l)) })
    await iam.close()
    expect(lines.join('')).toMatch(/DEVELOPMENT IAM.*NOT FOR PRODUCTION/)
    expect(lines.join('')).not.toMatch(/broker-secret|alice-password/)
  })
})

describe('settings for the broker', () => {
  let iam: RunningDevIam
  let dir: string
  beforeAll(async () => {
    iam = await startDevIam()
    dir = mkdtempSync(join(tmpdir(), 'ctb-dev-iam-settings-'))
  })
  afterAll(async () => {
    await iam?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('gives issuer, discovery URL and the broker client', () => {
    expect(devIamBrokerSettings(iam)).toEqual({
      issuer: iam.issuer, discovery_url: `${iam.issuer}.well-known/openid-configuration`,
      client_id: 'broker', client_secret: 'broker-secret', auth_method: 'client_secret_basic',
    })
    expect(() => devIamBrokerSettings(iam, 'provisioner')).toThrow(/token-exchange/)
  })

  it('writes the secret to a 0600 file for an iam.issuers entry', () => {
    const file = join(dir, 'broker.secret')
    const entry = devIamTrustedIssuer(devIamBrokerSettings(iam), file)
    expect(entry).toEqual({
      issuer: iam.issuer, discovery_url: iam.discoveryUrl, development: true, profile: 'wlcg',
      client: { client_id: 'broker', auth_method: 'client_secret_basic', client_secret_file: file },
    })
    expect(readFileSync(file, 'utf8').trim()).toBe('broker-secret')
    expect(statSync(file).mode & 0o077).toBe(0)
  })
})
