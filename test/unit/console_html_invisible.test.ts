// Which characters the console names by code point in element text. The set the merged fix listed by hand
// (bidi controls, zero-width space and joiners, word joiner, BOM) left out other characters that browsers
// draw as nothing, so "alice" with one of them still looked exactly like "alice". Unicode names the whole
// set: Default_Ignorable_Code_Point (UAX #44, DerivedCoreProperties.txt; The Unicode Standard §5.21 says such
// characters are rendered invisibly unless a process supports them). The code points below are taken from
// that list, not from the code under test.
import { describe, expect, it } from 'vitest'
import { html } from '../../src/console/html.ts'

describe('element text names every default-ignorable character by its code point', () => {
  it.each([
    ['SOFT HYPHEN', 0x00ad],
    ['COMBINING GRAPHEME JOINER', 0x034f],
    ['HANGUL CHOSEONG FILLER', 0x115f],
    ['MONGOLIAN VOWEL SEPARATOR', 0x180e],
    ['INHIBIT SYMMETRIC SWAPPING', 0x206a],
    ['HANGUL FILLER', 0x3164],
    ['VARIATION SELECTOR-1', 0xfe00],
    ['HALFWIDTH HANGUL FILLER', 0xffa0],
    ['TAG LATIN CAPITAL LETTER A', 0xe0041],
    ['VARIATION SELECTOR-17', 0xe0100],
  ])('%s', (_name, cp) => {
    const ch = String.fromCodePoint(cp)
    const out = html`<td>${`ali${ch}ce`}</td>`.value
    expect(out).not.toContain(ch)
    expect(out).toBe(`<td>ali\u27E8U+${cp.toString(16).toUpperCase().padStart(4, '0')}\u27E9ce</td>`)
  })

  it('names C0 and C1 controls other than tab, line feed and carriage return', () => {
    // Category Cc: not default-ignorable, but browsers draw no glyph for U+0001 or U+0085 either.
    expect(html`<td>${'ali\u0001ce\u0085'}</td>`.value).toBe('<td>ali\u27E8U+0001\u27E9ce\u27E8U+0085\u27E9</td>')
    expect(html`<pre>${'a\tb\nc\r\n'}</pre>`.value).toBe('<pre>a\tb\nc\r\n</pre>')
  })

  it('leaves visible text alone: Hebrew, Arabic, CJK, an emoji, and markup escaped once', () => {
    const visible = 'דוד · محمد · 山田太郎 · 🧪 · <b>&'
    expect(html`<td>${visible}</td>`.value).toBe('<td>דוד · محمد · 山田太郎 · 🧪 · &lt;b&gt;&amp;</td>')
  })

  it('keeps an attribute value exact, whatever it holds', () => {
    const v = `a\u00ad\u{e0041}\u0001b`
    expect(html`<input value="${v}">`.value).toBe(`<input value="${v}">`)
  })
})

describe('a label cannot be forged with plain text', () => {
  // A caller can type the label's own characters: "alice⟨U+200B⟩" as text would show exactly as "alice" with
  // a real zero-width space, two values one rendering. The label's opening bracket (U+27E8) is therefore
  // itself labelled when the value holds it, so every "⟨" on the page starts a label the console wrote.
  it('shows a typed ⟨U+200B⟩ otherwise than a real U+200B', () => {
    const typed = html`<td>${'alice\u27E8U+200B\u27E9'}</td>`.value
    const real = html`<td>${'alice\u200B'}</td>`.value
    expect(real).toBe('<td>alice\u27E8U+200B\u27E9</td>')
    expect(typed).not.toBe(real)
    expect(typed).toBe('<td>alice\u27E8U+27E8\u27E9U+200B\u27E9</td>')
  })
})
