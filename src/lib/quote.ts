/**
 * Caller-supplied text inside a message: single-quoted, cut after 80 characters (marked `...`), and
 * every character outside printable ASCII, and the quote characters ' " \ themselves, shown as `?`.
 * The message then stays one line that RFC 6749's error_description character set carries unchanged,
 * the caller cannot close the quotes early, and the audit log and the wire read the same.
 */
export function quote(s: string): string {
  const shown = s.slice(0, 80).replace(/[^\x20-\x21\x23-\x26\x28-\x5b\x5d-\x7e]/g, '?')
  return `'${shown}${s.length > 80 ? '...' : ''}'`
}
