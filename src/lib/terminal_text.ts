/**
 * What a terminal may act on rather than show: controls (C0, DEL, C1: U+009B is a one-character CSI to a terminal
 * honouring C1), format characters (the bidirectional overrides, zero-width ones), unpaired surrogates, private
 * use and unassigned code points, and every separator but the plain space (U+2028 breaks the line).
 */
const NOT_SHOWN = /[\p{C}\p{Z}]/gu

/**
 * `text` as a JSON string for a line an operator reads on a terminal (audit list, revoke list), with every
 * character that is not shown as itself written as a `\uXXXX` escape. JSON.stringify alone escapes C0 controls,
 * quotes and backslashes but lets DEL, the C1 controls and the bidirectional overrides through, and these commands
 * are what a log or table under suspicion is read with. Letters, marks, digits, punctuation and symbols of any
 * script stay as written: a reason is an operator's own words, and "f\u00fcr" is no way to show "für".
 */
export function terminalQuoted(text: string): string {
  return JSON.stringify(text).replace(NOT_SHOWN, (c) => c === ' ' ? c : escaped(c))
}

/** Each UTF-16 unit of `c` as `\uXXXX` (a character beyond the BMP as its surrogate pair, as JSON writes it). */
function escaped(c: string): string {
  let out = ''
  for (let i = 0; i < c.length; i++) out += `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`
  return out
}

/**
 * A path for a message an operator reads: as it is when every character shows as itself (spaces too, as in
 * most paths with one), else quoted as `terminalQuoted` does. For paths someone else may have named, such as
 * where a link in a directory they may write leads.
 */
export function shownPath(path: string): string {
  return path.replaceAll(' ', '').search(NOT_SHOWN) === -1 ? path : terminalQuoted(path)
}
