import { describe, expect, it } from 'vitest'
import { quoted, shown } from '../../src/cli/shown_column.ts'

// Format characters outside the BMP are two UTF-16 code units. The tag characters U+E0020–U+E007F are invisible
// on a terminal and spell ASCII ("ASCII smuggling"): each must be escaped whole, as its surrogate pair, or two
// different values print alike and the quoted text no longer reads back as the value.
describe('quoted, for characters outside the BMP', () => {
  it('escapes an astral format character as both halves of its surrogate pair', () => {
    // U+E0041 TAG LATIN CAPITAL LETTER A: 0xE0041 - 0x10000 = 0xD0041; high 0xD800 + 0x340, low 0xDC00 + 0x041.
    expect(quoted('a\u{E0041}b')).toBe('"a\\udb40\\udc41b"')
    // U+E0001 LANGUAGE TAG: low half 0xDC00 + 0x001.
    expect(shown('x\u{E0001}')).toBe('"x\\udb40\\udc01"')
  })

  it('reads back as the value it quotes', () => {
    for (const v of ['a\u{E0041}\u{E0042}b', '\u{1D173}', 'caf\u00e9 \u202e', '\ud800x', 'x\udc00', '\u{1F600}'])
      expect(JSON.parse(quoted(v))).toBe(v)
  })

  it('leaves an astral letter or symbol readable', () => {
    // U+1F600 is a symbol (So), not a format character: it stays as itself.
    expect(quoted('\u{1F600}')).toBe('"\u{1F600}"')
  })
})
