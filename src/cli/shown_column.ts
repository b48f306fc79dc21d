/**
 * Values from the audit log or the revocations table as columns of the CLI's plain-text listings. A caller's
 * sub may hold spaces (`alice  until 2099-…` would read as two columns), and a body edited in the database
 * anything at all: a newline would forge a line, an escape sequence erase one on the operator's terminal.
 */
import { terminalQuoted } from '../lib/terminal_text.ts'

/** A value as one column: as it is when plainly printable ASCII without spaces, else quoted. */
export function shown(v: string): string {
  return /^[\x21-\x7e]+$/.test(v) ? v : quoted(v)
}

/** A free-text value (a reason) quoted, with every character a terminal would act on escaped (lib/terminal_text.ts). */
export function quoted(v: string): string {
  return terminalQuoted(v)
}
