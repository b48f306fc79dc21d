import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { IamConfigSchema } from '../../src/iam/iam_config.ts'
import { defaultDiscoveryUrl } from '../../src/iam/discovery.ts'

const client = { client_id: 'broker', client_secret_file: '/etc/ctb/iam-secret' }

describe('iam config section', () => {
  it('defaults to no trusted issuer with WLCG-recommended cache and skew settings', () => {
    const c = loadConfig({ env: {} })
    expect(c.iam.issuers).toEqual([])
    expect(c.iam).toMatchObject({ timeout_seconds: 10, jwks_cache_seconds: 21600, clock_skew_seconds: 60, max_token_bytes: 16384 })
  })

  it('keeps the issuer string exactly, trailing slash or not', () => {
    const c = IamConfigSchema.parse({ issuers: [{ issuer: 'https://iam.example.org/' }, { issuer: 'https://h.example.org/realm' }] })
    expect(c.issuers.map((i) => i.issuer)).toEqual(['https://iam.example.org/', 'https://h.example.org/realm'])
    expect(c.issuers[0]).toMatchObject({ algorithms: ['RS256', 'ES256'], profile: 'wlcg', introspection: 'off', development: false })
  })

  it.each([
    ['http issuer without development', { issuer: 'http://iam.example.org/' }, /https/],
    ['http discovery URL without development', { issuer: 'https://iam.example.org/', discovery_url: 'http://iam.example.org/.well-known/openid-configuration' }, /https/],
    ['HS256 in the allow-list', { issuer: 'https://iam.example.org/', algorithms: ['HS256'] }, /algorithms/],
    ['alg none in the allow-list', { issuer: 'https://iam.example.org/', algorithms: ['none'] }, /algorithms/],
    ['introspection without a client', { issuer: 'https://iam.example.org/', introspection: 'opaque' }, /client/],
    ['client_secret_basic without a secret file', { issuer: 'https://iam.example.org/', client: { client_id: 'b' } }, /client_secret_file/],
    ['private_key_jwt without a key file', { issuer: 'https://iam.example.org/', client: { client_id: 'b', auth_method: 'private_key_jwt' } }, /private_key_file/],
  ])('refuses %s', (_n, issuer, msg) => {
    const r = IamConfigSchema.safeParse({ issuers: [issuer] })
    expect(r.success).toBe(false)
    expect(JSON.stringify(r.error?.issues)).toMatch(msg)
  })

  it('never waives the audience check unless allow_any_audience says so, and not both', () => {
    expect(IamConfigSchema.parse({ issuers: [{ issuer: 'https://iam.example.org/' }] }).issuers[0]!.allow_any_audience).toBe(false)
    expect(IamConfigSchema.parse({ issuers: [{ issuer: 'https://iam.example.org/', allow_any_audience: 'true' }] }).issuers[0]!.allow_any_audience).toBe(true)
    expect(IamConfigSchema.safeParse({ issuers: [{ issuer: 'https://iam.example.org/', audience: 'https://b.example', allow_any_audience: true }] }).success).toBe(false)
  })

  // IAM puts https://wlcg.cern.ch/jwt/v1/any in every token that asked for no audience (docs/iam-and-wlcg.md
  // §1.5), and SciTokens' ANY means any relying party: expecting either waives the audience check as
  // allow_any_audience does, so it must be said that way, not slipped into the list.
  it.each(['https://wlcg.cern.ch/jwt/v1/any', 'ANY'])('refuses the wildcard audience %s among the expected ones', (any) => {
    const r = IamConfigSchema.safeParse({ issuers: [{ issuer: 'https://iam.example.org/', audience: ['https://broker.example.org', any] }] })
    expect(r.success).toBe(false)
    expect(JSON.stringify(r.error?.issues)).toMatch(/allow_any_audience/)
  })

  it('allows http:// only for an issuer marked development', () => {
    expect(IamConfigSchema.safeParse({ issuers: [{ issuer: 'http://127.0.0.1:9000/', development: true }] }).success).toBe(true)
  })

  it('refuses duplicate issuers, but not ones differing by a trailing slash', () => {
    expect(IamConfigSchema.safeParse({ issuers: [{ issuer: 'https://a.example/' }, { issuer: 'https://a.example/' }] }).success).toBe(false)
    expect(IamConfigSchema.safeParse({ issuers: [{ issuer: 'https://a.example/' }, { issuer: 'https://a.example' }] }).success).toBe(true)
  })

  it.each([['clock skew above 5 min', { clock_skew_seconds: 301 }], ['timeout above 2 min', { timeout_seconds: 121 }], ['token bound below 1 KiB', { max_token_bytes: 100 }]])('bounds %s', (_n, o) => {
    expect(IamConfigSchema.safeParse(o).success).toBe(false)
  })

  it('accepts a single audience string as a list and a full broker client', () => {
    const c = IamConfigSchema.parse({ issuers: [{ issuer: 'https://iam.example.org/', audience: 'https://broker.example.org', introspection: 'always', client }] })
    expect(c.issuers[0]!.audience).toEqual(['https://broker.example.org'])
    expect(c.issuers[0]!.client).toMatchObject({ client_id: 'broker', auth_method: 'client_secret_basic' })
  })

  it('derives the discovery URL without URL resolution, keeping a path issuer\'s path', () => {
    expect(defaultDiscoveryUrl('https://iam.example.org/')).toBe('https://iam.example.org/.well-known/openid-configuration')
    expect(defaultDiscoveryUrl('https://h.example.org/realm')).toBe('https://h.example.org/realm/.well-known/openid-configuration')
  })
})
