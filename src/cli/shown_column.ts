/**
 * Values from the audit log or the revocations table as columns of the CLI's plain-text listings. A caller's
 * sub may hold spaces (`alice  until 2099-…` would read as two columns), and a body edited in the database
 * anything at all: a newline would forge a line, an escape sequence erase one on the operator's terminal.
 */

/** A value as one column: as it is when plainly printable ASCII without spaces, else quoted. */
export function shown(v: string): string {
  return /^[\x21-\x7e]+$/.test(v) ? v : quoted(v)
}

/**
 * JSON's quoting (C0 controls, quotes, backslashes, lone surrogates), with what it leaves raw escaped too: C1
 * controls, format characters (bidi overrides) and line separators. Letters of any script stay readable.
 */
export function quoted(v: string): string {
  // split(''), not the match's first unit: a format character outside the BMP (the invisible tag characters
  // U+E0020–U+E007F spell ASCII) is a surrogate pair, and escaping only its first half would drop the second
  // and print distinct values alike.
  return JSON.stringify(v).replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (c) => c.split('').map(unitEscape).join(''))
}

const unitEscape = (unit: string) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`
