import { createDecipheriv, createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { jtiSecond, newJti } from '../../src/lib/jti.ts'

// The key as docs/audit.md states it: the first 16 bytes of SHA-256("condor-token-broker jti v1").
const KEY = createHash('sha256').update('condor-token-broker jti v1').digest().subarray(0, 16)
const open = (jti: string) => createDecipheriv('aes-128-ecb', KEY, null).setAutoPadding(false).update(Buffer.from(jti, 'hex'))

describe('jti', () => {
  it('is 32 lowercase hex digits: one AES-128 block holding the second and 11 random bytes', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 40 - 1 }), (second) => {
      const jti = newJti(second)
      expect(jti).toMatch(/^[0-9a-f]{32}$/)
      expect(open(jti).readUIntBE(0, 5)).toBe(second)
      expect(jtiSecond(jti)).toBe(second)
    }))
  })

  it('differs in its random bytes from one id to the next, across refills of the entropy pool', () => {
    const second = 1_800_000_000
    const tails = new Set(Array.from({ length: 2000 }, () => open(newJti(second)).subarray(5).toString('hex')))
    expect(tails.size).toBe(2000)
  })

  it('tells its own second when ids of different seconds are asked for in turn, and never repeats', () => {
    // Seconds chosen by hand, alternating, so that no two consecutive ids share one.
    const seconds = Array.from({ length: 600 }, (_, i) => [1_800_000_000, 1_800_000_001, 1_234_567_890][i % 3]!)
    const ids = seconds.map((s) => newJti(s))
    expect(ids.map((id) => open(id).readUIntBE(0, 5))).toEqual(seconds)
    expect(new Set(ids.map((id) => open(id).subarray(5).toString('hex'))).size).toBe(600)
  })

  it('is made in the current second by default', () => {
    const before = Math.floor(Date.now() / 1000)
    const second = jtiSecond(newJti())!
    expect(second).toBeGreaterThanOrEqual(before)
    expect(second).toBeLessThanOrEqual(Math.floor(Date.now() / 1000))
  })

  it('reads no second from what is not 32 lowercase hex digits', () => {
    for (const s of ['jti-17', '', '0123456789ABCDEF0123456789ABCDEF', '0123456789abcdef0123456789abcde', '0123456789abcdef0123456789abcdef0', '0123456789abcdef0123456789abcdeg']) {
      expect(jtiSecond(s)).toBeUndefined()
    }
    // Any other 32 hex digits read as some second: what the caller checks it against decides.
    expect(jtiSecond('0123456789abcdef0123456789abcdef')).toBeTypeOf('number')
  })
})
