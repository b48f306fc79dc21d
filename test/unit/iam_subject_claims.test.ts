import { describe, expect, it } from 'vitest'
import { InvalidRequest } from '../../src/errors.ts'
import { checkWlcgVersion, parseScopeClaim, toVerifiedSubject } from '../../src/iam/subject_claims.ts'
import { VerifiedSubjectCache } from '../../src/iam/verified_cache.ts'

describe('checkWlcgVersion (WLCG profile §2.1: reject unknown MAJOR, accept newer MINOR)', () => {
  it.each(['1.0', '1.3', '1.10'])('accepts %s', (v) => expect(() => checkWlcgVersion({ 'wlcg.ver': v })).not.toThrow())
  it.each([[undefined], ['2.0'], ['0.9'], ['1'], ['1.0.1'], [1.0], ['v1.0']])('rejects %s', (v) => {
    expect(() => checkWlcgVersion(v === undefined ? {} : { 'wlcg.ver': v })).toThrow(InvalidRequest)
  })
})

describe('parseScopeClaim', () => {
  it.each([
    ['compute.read  storage.read:/a compute.read', ['compute.read', 'storage.read:/a']],
    [['a', 'b', 'a'], ['a', 'b']],
    [undefined, []],
    ['', []],
  ])('%j → %j', (input, out) => expect(parseScopeClaim(input)).toEqual(out))
  it.each([[42], [['a', 1]], [{}]])('rejects %j', (v) => expect(() => parseScopeClaim(v)).toThrow(InvalidRequest))
})

describe('toVerifiedSubject', () => {
  const base = { sub: 'u-1', exp: 2_000_000_000, scope: 'compute.read', jti: 'j' }
  it('prefers wlcg.groups over groups and maps introspection username', () => {
    const s = toVerifiedSubject('https://iam/', { ...base, 'wlcg.groups': ['/a'], groups: ['/b'], username: 'bob' })
    expect(s).toMatchObject({ iss: 'https://iam/', sub: 'u-1', groups: ['/a'], scopes: ['compute.read'], jti: 'j', preferred_username: 'bob' })
    expect(s.client_id).toBeUndefined()
  })
  it('deep-freezes the result so cached subjects cannot be mutated by a consumer', () => {
    const s = toVerifiedSubject('https://iam/', { ...base, act: { sub: 'x' } })
    expect(() => { (s.scopes as string[]).push('x') }).toThrow()
    expect(Object.isFrozen(s.claims.act)).toBe(true)
  })
  it.each([
    ['no sub', { ...base, sub: undefined }],
    ['empty sub', { ...base, sub: '' }],
    ['control character in sub', { ...base, sub: 'a\nb' }],
    ['non-numeric exp', { ...base, exp: '2000000000' }],
    ['client_id not a string', { ...base, client_id: 7 }],
    ['groups not an array', { ...base, groups: '/a' }],
  ])('rejects %s', (_n, claims) => expect(() => toVerifiedSubject('https://iam/', claims as Record<string, unknown>)).toThrow(InvalidRequest))
})

describe('VerifiedSubjectCache', () => {
  const subject = toVerifiedSubject('https://iam/', { sub: 'u', exp: 2_000_000_000 })
  it('keys by SHA-256, never the token', () => {
    const k = VerifiedSubjectCache.key('header.payload.signature')
    expect(k).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(k).not.toContain('payload')
  })
  it('answers until exp by the injected clock, then misses', () => {
    const c = new VerifiedSubjectCache({ maxEntries: 10 })
    c.set('k', subject, 600)
    expect(c.get('k', 1_999_999_999)).toBe(subject)
    expect(c.get('k', 2_000_000_000)).toBeUndefined()
    expect(c.get('k', 1_000)).toBeUndefined()
    c.close()
  })
  it('does not cache with a non-positive ttl, and stops caching (without failing) when full', () => {
    const c = new VerifiedSubjectCache({ maxEntries: 2 })
    c.set('a', subject, 0)
    expect(c.get('a', 0)).toBeUndefined()
    c.set('b', subject, 60)
    c.set('c', subject, 60)
    expect(() => c.set('d', subject, 60)).not.toThrow()
    expect(c.get('d', 0)).toBeUndefined()
    expect(c.size).toBe(2)
    c.close()
  })
  it('maxEntries 0 disables caching', () => {
    const c = new VerifiedSubjectCache({ maxEntries: 0 })
    c.set('a', subject, 60)
    expect(c.get('a', 0)).toBeUndefined()
    c.close()
  })
})
