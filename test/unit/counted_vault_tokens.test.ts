import { describe, expect, it } from 'vitest'
import { CountedVaultTokens } from '../../src/http/counted_vault_tokens.ts'

describe('CountedVaultTokens', () => {
  it('counts a digest the first time only, and forgets the oldest past its bound', () => {
    const c = new CountedVaultTokens(2)
    expect(c.firstTime('a')).toBe(true)
    expect(c.firstTime('a')).toBe(false)
    expect(c.firstTime('b')).toBe(true)
    // A third digest pushes out the oldest ('a'), which then counts again; 'b' is still remembered.
    expect(c.firstTime('c')).toBe(true)
    expect(c.firstTime('b')).toBe(false)
    expect(c.firstTime('a')).toBe(true)
  })
})
