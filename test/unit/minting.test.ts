import { generateKeyPairSync } from 'node:crypto'
import { jwtVerify, importJWK } from 'jose'
import { describe, expect, it } from 'vitest'
import { buildIdTokenClaims, mintIdToken, prepareIdTokenKey } from '../../src/issuance/idtoken.ts'
import { buildSciTokenClaims, mintSciToken, type AsymmetricKey } from '../../src/issuance/scitoken.ts'
import { verifyMintedIdToken, verifyMintedSciToken } from '../../src/issuance/verify_minted.ts'
import { expandAuthz, parseAuthzLevel } from '../../src/issuance/authz.ts'
import { jwkThumbprint, publicJwk } from '../../src/keys/jwk.ts'

const NOW = 1_800_000_000
const idKey = prepareIdTokenKey('broker1', Buffer.alloc(64, 7))

function asymmetric(alg: 'ES256' | 'RS256'): AsymmetricKey {
  const { privateKey, publicKey } = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { kid: jwkThumbprint(publicKey), alg, privateKey, publicKey }
}

describe('IDTOKEN claims', () => {
  it('always sets exp, a 32-hex jti and upper-case condor:/ scopes', () => {
    const c = buildIdTokenClaims({ trustDomain: 'pool.example.org', subject: 'startd-a@eps.pool.example.org', authz: ['READ', 'ADVERTISE_STARTD'], lifetimeSeconds: 600, now: NOW })
    expect(c).toMatchObject({ iss: 'pool.example.org', iat: NOW, exp: NOW + 600, scope: 'condor:/READ condor:/ADVERTISE_STARTD' })
    expect(c.jti).toMatch(/^[0-9a-f]{32}$/)
  })
  it.each([
    ['pool example', 'space'], ['pool,example', 'comma'], ['pool\texample', 'tab'], ['', 'empty'],
  ])('rejects trust domain %j (%s)', (td) => {
    expect(() => buildIdTokenClaims({ trustDomain: td, subject: 'a@b', authz: ['READ'], lifetimeSeconds: 1, now: NOW })).toThrow(/trust domain/)
  })
  it.each(['alice', '@pool', 'alice@', 'al ice@pool'])('rejects identity %j', (sub) => {
    expect(() => buildIdTokenClaims({ trustDomain: 'td', subject: sub, authz: ['READ'], lifetimeSeconds: 1, now: NOW })).toThrow(/user@domain/)
  })
  it('refuses an unscoped IDTOKEN and a non-positive lifetime', () => {
    expect(() => buildIdTokenClaims({ trustDomain: 'td', subject: 'a@td', authz: [], lifetimeSeconds: 1, now: NOW })).toThrow(/unrestricted/)
    expect(() => buildIdTokenClaims({ trustDomain: 'td', subject: 'a@td', authz: ['READ'], lifetimeSeconds: 0, now: NOW })).toThrow(/lifetime/)
  })
  it.each(['OWNER', 'DEFAULT', 'ALLOW', 'CLIENT', 'root'])('rejects authorization level %s', (l) => {
    expect(() => parseAuthzLevel(l)).toThrow(/unknown HTCondor authorization level/)
  })
  it('expands implications as HTCondor does', () => {
    expect([...expandAuthz(['DAEMON'])].sort()).toEqual(['DAEMON', 'READ', 'WRITE'])
    expect([...expandAuthz(['ADMINISTRATOR'])].sort()).toEqual(['ADMINISTRATOR', 'READ', 'WRITE'])
  })
  it('verify-after-mint catches a token signed with another key', () => {
    const c = buildIdTokenClaims({ trustDomain: 'td', subject: 'a@td', authz: ['READ'], lifetimeSeconds: 60, now: NOW })
    const other = prepareIdTokenKey('broker1', Buffer.alloc(64, 8))
    expect(() => verifyMintedIdToken(mintIdToken(c, idKey), idKey, c)).not.toThrow()
    expect(() => verifyMintedIdToken(mintIdToken(c, other), idKey, c)).toThrow(/does not verify/)
  })
})

describe.each(['ES256', 'RS256'] as const)('SciToken minting (%s)', (alg) => {
  const key = asymmetric(alg)
  it.each(['wlcg', 'scitokens2'] as const)('mints a %s token that jose verifies', async (profile) => {
    const claims = buildSciTokenClaims({ issuer: 'https://broker.example.org', subject: 'alice', audience: ['condor://schedd.example.org:9618'], scopes: ['condor:/read', 'compute.read'], lifetimeSeconds: 1200, now: NOW, profile })
    const token = mintSciToken(claims, key)
    verifyMintedSciToken(token, key, claims)
    const { payload, protectedHeader } = await jwtVerify(token, await importJWK(publicJwk(key.publicKey, alg, key.kid), alg), {
      issuer: 'https://broker.example.org', audience: 'condor://schedd.example.org:9618', currentDate: new Date(NOW * 1000),
    })
    expect(protectedHeader).toEqual({ alg, kid: key.kid, typ: 'JWT' })
    expect(payload).toMatchObject({ sub: 'alice', scope: 'condor:/READ compute.read', nbf: NOW - 60, exp: NOW + 1200 })
    if (profile === 'wlcg') expect(payload['wlcg.ver']).toBe('1.0')
    else expect(payload.ver).toBe('scitoken:2.0')
  })
})

describe('SciToken claims validation', () => {
  const base = { issuer: 'https://b.example', subject: 's', audience: ['https://x'], scopes: ['compute.read'], lifetimeSeconds: 60, now: NOW, profile: 'wlcg' as const }
  it('requires https issuer, an audience and a scope', () => {
    expect(() => buildSciTokenClaims({ ...base, issuer: 'http://b.example' })).toThrow(/https/)
    expect(() => buildSciTokenClaims({ ...base, audience: [] })).toThrow(/audience/)
    expect(() => buildSciTokenClaims({ ...base, scopes: [' '] })).toThrow(/scope/)
    expect(() => buildSciTokenClaims({ ...base, scopes: ['condor:/OWNER'] })).toThrow(/authorization level/)
  })
  it('emits an array aud only for several audiences', () => {
    expect(buildSciTokenClaims(base).aud).toBe('https://x')
    expect(buildSciTokenClaims({ ...base, audience: ['a:b', 'c:d'] }).aud).toEqual(['a:b', 'c:d'])
  })
})
