import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { fnv1a, JtiIndex } from '../../src/storage/jti_index.ts'

describe('JtiIndex', () => {
  it('finds every seq added for a jti, across growth far beyond its first capacity', () => {
    const idx = new JtiIndex(16)
    const jtis = Array.from({ length: 20_000 }, () => randomBytes(16).toString('hex'))
    jtis.forEach((j, i) => idx.add(j, i + 1))
    expect(idx.size).toBe(20_000)
    for (let i = 0; i < jtis.length; i += 97) expect(idx.candidates(jtis[i]!)).toContain(i + 1)
    // A random unknown jti almost never has candidates; none here would be a 32-bit hash collision.
    expect(idx.candidates(randomBytes(16).toString('hex'))).toEqual([])
  })

  it('keeps several seqs under one jti (an issuance and its revocation) and under colliding hashes', () => {
    const idx = new JtiIndex()
    idx.add('0123456789abcdef0123456789abcdef', 7)
    idx.add('0123456789abcdef0123456789abcdef', 9)
    expect(idx.candidates('0123456789abcdef0123456789abcdef').sort()).toEqual([7, 9])
    // "costarring" and "liquid" share a 32-bit FNV-1a hash: both seqs come back, the caller re-checks rows.
    expect(fnv1a('costarring')).toBe(fnv1a('liquid'))
    idx.add('costarring', 11)
    idx.add('liquid', 12)
    expect(idx.candidates('liquid').sort()).toEqual([11, 12])
  })

  it('drops entries of pruned records when it grows', () => {
    const idx = new JtiIndex(16)
    for (let i = 1; i <= 8; i++) idx.add(`old-${i}`, i)
    for (let i = 9; i <= 40; i++) idx.add(`new-${i}`, i, 9)
    expect(idx.candidates('old-3')).toEqual([])
    expect(idx.candidates('new-9')).toEqual([9])
    expect(idx.size).toBe(32)
  })

  it('refuses a seq it cannot hold', () => {
    const idx = new JtiIndex()
    expect(() => idx.add('x', 0)).toThrow(RangeError)
    expect(() => idx.add('x', 2 ** 32)).toThrow(RangeError)
  })
})
