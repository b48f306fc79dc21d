import { asciiLower } from '../lib/ascii_case.ts'
import { quote } from '../lib/quote.ts'

/**
 * The rule for a name the caller's own values fill in: a directory in a per-caller scope path
 * (`/store/user/{preferred_username}`) or the user part of an identity (`{preferred_username}@{uid_domain}`).
 * Either ends up as a local account's name somewhere: a storage element mapping user directories to
 * accounts, or an execute node running the identity's jobs as the UNIX user before the `@`. One rule for
 * both, so a caller refused one is refused the other.
 */

/**
 * A value the caller chose, as it went into the name: its own (`sub`, `preferred_username`, `client_id`), or one
 * it picked within the grant's bounds (`host`, `host_short` within `hosts`, a request parameter within `params`).
 */
export interface CallerValue {
  readonly placeholder: string
  readonly value: string
  /**
   * Set for a value picked within the grant's bounds: its case is not refused (a host is lower-cased before it
   * gets here, and one caller may pick any spelling a params glob admits, so case cannot tell two callers apart),
   * but the whole name it helps make is still checked against the reserved names, folded.
   */
  readonly picked?: true
}

/** Why a name was refused: the first caller value that makes it so, and the whole name when it differs. */
export interface NameRefusal {
  readonly placeholder: string
  readonly value: string
  readonly because: 'case' | 'reserved'
  /** The whole rendered name, when literal text around the value made it reserved. */
  readonly name?: string
}

/**
 * Refuses the name `values` helped make when a value has an upper-case letter or the whole name, ASCII-folded,
 * is in `reserved` (SYSTEM_ACCOUNTS and the grant's reserved_names). `values` must not be empty: a name the
 * policy author wrote alone is the author's choice, not a caller's.
 */
export function refuseCallerName(name: string, values: readonly CallerValue[], reserved: ReadonlySet<string>): NameRefusal | undefined {
  // Lower case only: Alice and alice are two IAM users but one account or directory wherever a lookup or the
  // storage folds case; refusing both is the only rule that needs no record of who came first.
  const upper = values.find((v) => !v.picked && /[A-Z]/.test(v.value))
  if (upper) return { placeholder: upper.placeholder, value: upper.value, because: 'case' }
  // The whole name, not the value: literal text around the value may complete a reserved one (u + ucp is
  // uucp). ASCII-folded, since a literal's capitals fold wherever the name is looked up without case.
  const folded = asciiLower(name)
  if (!reserved.has(folded)) return undefined
  const first = values[0]!
  return { placeholder: first.placeholder, value: first.value, because: 'reserved', ...(folded !== first.value ? { name: folded } : {}) }
}

/**
 * The refusal as one line: `the caller's preferred_username 'daemon' is a reserved account name and cannot …`.
 * `kind` names what the name is (`path segment`, `user`); `use` says what it could not become.
 */
export function describeNameRefusal(r: NameRefusal, kind: string, use: string): string {
  const why = r.because === 'case' ? 'has upper-case letters'
    : r.name !== undefined ? `would make the ${kind} ${quote(r.name)}, a reserved account name,` : 'is a reserved account name'
  const note = r.because === 'case' ? ' (two callers would differ only by case)' : ''
  return `the caller's ${r.placeholder} ${quote(r.value)} ${why} and ${use}${note}`
}
