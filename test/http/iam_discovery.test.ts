import { http, HttpResponse } from 'msw'
import { beforeEach, describe, expect, it } from 'vitest'
import { TemporarilyUnavailable } from '../../src/errors.ts'
import { IamDiscovery } from '../../src/iam/discovery.ts'
import { IamConfigSchema } from '../../src/iam/iam_config.ts'
import type { Clock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { mswFetch, TestIam, useMswIam } from '../support/iam.ts'

const iam = await TestIam.create({ issuer: 'https://iam.test.example/' })
const devIam = await TestIam.create({ issuer: 'http://127.0.0.1:18080/' })
const server = useMswIam(iam, devIam)

let now = 1_700_000_000
const clock: Clock = { now: () => now }

async function discoveryFor(issuers: Record<string, unknown>[], o: Record<string, unknown> = {}): Promise<IamDiscovery> {
  return IamDiscovery.create(IamConfigSchema.parse({ issuers, discovery_retry_seconds: 0, ...o }), { fetch: mswFetch, clock, log: silentLogger })
}

beforeEach(() => {
  now = 1_700_000_000
  for (const i of [iam, devIam]) {
    i.counts = { discovery: 0, jwks: 0, token: 0, introspection: 0, revocation: 0 }
    i.faults = { discovery: 'ok', jwks: 'ok', token: 'ok', introspection: 'ok' }
  }
})

describe('IamDiscovery', () => {
  it('discovers once and serves the cached configuration', async () => {
    const d = await discoveryFor([{ issuer: iam.issuer }])
    const c1 = await d.configuration(iam.issuer)
    const c2 = await d.configuration(iam.issuer)
    expect(c1).toBe(c2)
    expect(c1.serverMetadata()).toMatchObject({ issuer: iam.issuer, jwks_uri: iam.jwksUri, token_endpoint: iam.tokenEndpoint })
    expect(iam.counts.discovery).toBe(1)
  })

  it('concurrent first calls share one request', async () => {
    const d = await discoveryFor([{ issuer: iam.issuer }])
    await Promise.all(Array.from({ length: 10 }, () => d.configuration(iam.issuer)))
    expect(iam.counts.discovery).toBe(1)
  })

  it('after the cache age, refreshes in the background and keeps the old metadata if IAM is down', async () => {
    const d = await discoveryFor([{ issuer: iam.issuer }], { discovery_cache_seconds: 60 })
    const c1 = await d.configuration(iam.issuer)
    now += 61
    iam.faults.discovery = 'down'
    expect(await d.configuration(iam.issuer)).toBe(c1)
    await expect.poll(() => iam.counts.discovery).toBe(2)
  })

  it('uses the configured discovery URL, separate from the issuer string', async () => {
    server.use(http.get('https://config.test.example/iam/.well-known/openid-configuration', () => HttpResponse.json(iam.discoveryDocument())))
    const d = await discoveryFor([{ issuer: iam.issuer, discovery_url: 'https://config.test.example/iam/.well-known/openid-configuration' }])
    expect((await d.configuration(iam.issuer)).serverMetadata().issuer).toBe(iam.issuer)
    expect(iam.counts.discovery).toBe(0)
  })

  it('allows http:// for an issuer marked development', async () => {
    const d = await discoveryFor([{ issuer: devIam.issuer, development: true }])
    expect((await d.configuration(devIam.issuer)).serverMetadata().issuer).toBe(devIam.issuer)
  })

  it('refuses an http:// jwks_uri from an https issuer', async () => {
    server.use(http.get(iam.discoveryUrl, () => HttpResponse.json({ ...iam.discoveryDocument(), jwks_uri: 'http://iam.test.example/jwk' })))
    const d = await discoveryFor([{ issuer: iam.issuer }])
    await expect(d.configuration(iam.issuer)).rejects.toBeInstanceOf(TemporarilyUnavailable)
  })

  it.each([
    ['issuer with an extra path', 'https://iam.test.example/other/'],
    ['issuer of another host', 'https://evil.test.example/'],
    ['issuer without the slash the config has', 'https://iam.test.example'],
  ])('refuses a discovery document naming the %s', async (_n, discovered) => {
    server.use(http.get(iam.discoveryUrl, () => HttpResponse.json({ ...iam.discoveryDocument(), issuer: discovered })))
    const d = await discoveryFor([{ issuer: iam.issuer }])
    await expect(d.configuration(iam.issuer)).rejects.toBeInstanceOf(TemporarilyUnavailable)
  })

  it('looks issuers up by exact string only', async () => {
    const d = await discoveryFor([{ issuer: iam.issuer }])
    expect(d.issuer(iam.issuer)?.config.issuer).toBe(iam.issuer)
    expect(d.issuer('https://iam.test.example')).toBeUndefined()
    expect(d.issuer('HTTPS://iam.test.example/')).toBeUndefined()
  })
})
