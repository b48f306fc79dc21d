import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { newJti } from '../../src/lib/jti.ts'
import { compilePatterns, isHostPattern, isNormalisedPath, pathCovers } from '../../src/policy/patterns.ts'

describe('policy patterns', () => {
  // pattern | value | matches
  it.each([
    ['https://*.example.org', 'https://se1.example.org', true],
    ['https://*.example.org', 'https://a.b.example.org', true],
    ['https://*.example.org', 'https://evil.test/x.example.org', false],
    ['https://*.example.org', 'https://evil.test#.example.org', false],
    ['https://*.example.org', 'https://u@evil.example.org', false],
    ['condor://*:9618', 'condor://cm.example.org:9618', true],
    ['condor://*:9618', 'condor://cm.example.org:9618/x:9618', false],
    ['exact.example.org', 'exact.example.org', true],
    ['exact.example.org', 'exactXexample.org', false],
    ['a+b(c)', 'a+b(c)', true],
  ])('%s ~ %s → %s', (pattern, value, expected) => {
    expect(compilePatterns([pattern]).test(value)).toBe(expected)
  })

  // Several `*` in one pattern: each stands for a run of host-name characters, `.` among them.
  it.each([
    ['*.*.example.org', 'a.b.example.org', true],
    ['*.*.example.org', 'a.b.c.example.org', true],
    ['*.*.example.org', 'a.example.org', false],
    ['*-*.*', 'ep-1.x', true],
    ['*-*.*', 'ep.x', false],
    ['https://*.*.example.org/*', 'https://a.b.example.org/x', true],
    ['https://*.*.example.org/*', 'https://a/b.example.org/x', false],
    ['https://*.*.example.org/*', 'https://a.b.example.org/x/y', false],
    ['*@*', 'a@b', true],
    ['*@*', 'a@b@c', false],
    ['**', '', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'acb', false],
  ])('%s ~ %s → %s (several stars)', (pattern, value, expected) => {
    expect(compilePatterns([pattern]).test(value)).toBe(expected)
    expect(compilePatterns(['exact.example.org', pattern, 'z*']).test(value)).toBe(expected || value === 'exact.example.org')
  })

  it('agrees with the glob\'s definition as a regular expression on short patterns and values', () => {
    // The definition, as docs/policies.md words it, for inputs short enough that backtracking cannot blow up.
    const oracle = (p: string) => new RegExp(`^${p.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('[A-Za-z0-9_.-]*')}$`)
    const chars = fc.constantFrom('a', 'b', '.', '-', ':', '/', '@', '*')
    fc.assert(fc.property(fc.string({ unit: chars, maxLength: 8 }), fc.string({ unit: fc.constantFrom('a', 'b', '.', '-', ':', '/', '@'), maxLength: 12 }), (pattern, value) => {
      expect(compilePatterns([pattern]).test(value)).toBe(oracle(pattern).test(value))
    }), { numRuns: 3000 })
  })

  it('agrees with the definition for any list of patterns, any characters and either case rule', () => {
    // The definition again, built here from the docs' words: each pattern alone, `*` as [A-Za-z0-9_.-]*, and with
    // ignoreCase the ASCII letters of pattern and value folded (no other character changes case).
    const fold = (x: string) => x.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32))
    const literal = (x: string) => x.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
    const oracle = (patterns: string[], value: string, ignoreCase: boolean) => patterns.some((p) => {
      const f = ignoreCase ? fold : (x: string) => x
      return new RegExp(`^${f(p).split('*').map(literal).join('[A-Za-z0-9_.-]*')}$`).test(f(value))
    })
    // Letters of both cases, a non-ASCII letter that case folding could touch, the separators * must not cross,
    // and the characters a RegExp would read as syntax.
    const unit = fc.constantFrom('a', 'B', 'é', 'É', '_', '.', '-', '0', ':', '/', '@', '$', '(', '[', '\\', '+', '?', '^', '|', '\n')
    const pattern = fc.string({ unit: fc.oneof(unit, fc.constant('*')), maxLength: 7 })
    fc.assert(fc.property(fc.array(pattern, { minLength: 1, maxLength: 3 }), fc.string({ unit, maxLength: 10 }), fc.boolean(), (patterns, value, ignoreCase) => {
      expect(compilePatterns(patterns, { ignoreCase }).test(value)).toBe(oracle(patterns, value, ignoreCase))
    }), { numRuns: 5000 })
  })

  it('matches a many-star pattern against a long value in linear time (no backtracking blow-up)', () => {
    // A value of 126 one-letter labels ending otherwise than the pattern: a backtracking matcher tries every way
    // of placing the pattern's 8 dots among the value's 125 (about 10^12) before it says no.
    const p = compilePatterns([`${Array(8).fill('*').join('.')}.example.org`], { ignoreCase: true })
    const value = `${Array(126).fill('a').join('.')}.example.net`
    const t = Date.now()
    expect(p.test(value)).toBe(false)
    expect(p.test(`${Array(126).fill('a').join('.')}.example.org`)).toBe(true)
    expect(Date.now() - t).toBeLessThan(200)
  })

  it('hosts compare case-insensitively when asked; audiences do not', () => {
    expect(compilePatterns(['EP-*.Example.org'], { ignoreCase: true }).test('ep-1.example.ORG')).toBe(true)
    expect(compilePatterns(['https://SE.example.org']).test('https://se.example.org')).toBe(false)
  })

  it.each([
    ['/data', '/data', true], ['/data', '/data/run1/f', true], ['/data/', '/data/run1', true], ['/data/', '/data', true],
    ['/data', '/datax', false], ['/data/run1', '/data', false], ['/', '/anything', true],
  ])('grant %s covers %s → %s', (granted, requested, expected) => {
    expect(pathCovers(granted, requested)).toBe(expected)
  })

  it.each([
    ['/a/b', true], ['/a/b/', true], ['/', true], ['a/b', false], ['/a//b', false], ['/a/./b', false],
    ['/a/../b', false], ['/a/%2e%2e/b', false], ['/a b', false], ['/a?x', false],
  ])('isNormalisedPath(%s) → %s', (p, expected) => {
    expect(isNormalisedPath(p)).toBe(expected)
  })

  it.each([['*.example.org', true], ['ep-*.site.org', true], ['*', false], ['**', false], ['Upper.org', false], ['a..b', true], ['-a.org', false]])(
    'isHostPattern(%s) → %s', (p, expected) => { expect(isHostPattern(p)).toBe(expected) })

  it('newJti gives distinct 32-hex ids across pool refills', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newJti()))
    expect(ids.size).toBe(1000)
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/)
  })
})
