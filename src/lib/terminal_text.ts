/**
 * `text` as a JSON string holding printable ASCII only, for a line an operator reads on a terminal (audit list,
 * revoke list). JSON.stringify alone escapes C0 controls, quotes and backslashes but lets DEL, the C1 controls
 * (U+009B is a one-character CSI to a terminal honouring them) and the bidirectional overrides through, and
 * these commands are what a log or table under suspicion is read with.
 */
export function terminalQuoted(text: string): string {
  return JSON.stringify(text).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** A column's value as stored when it is printable ASCII (the broker writes no other), else quoted as above. */
export function terminalText(text: unknown): string {
  const s = String(text)
  return /^[\x20-\x7e]*$/.test(s) ? s : terminalQuoted(s)
}
