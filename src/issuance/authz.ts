import { InvalidScope } from '../errors.ts'
import { asciiUpper } from '../lib/ascii_case.ts'
import { quote } from '../lib/quote.ts'

/**
 * HTCondor authorization levels that may appear as `condor:/LEVEL` scopes. DEFAULT, CLIENT and ALLOW are
 * config pseudo-levels and OWNER is gone, so they are refused (docs/htcondor-tokens.md §3.1).
 */
export const AUTHZ_LEVELS = [
  'READ', 'WRITE', 'NEGOTIATOR', 'ADMINISTRATOR', 'CONFIG', 'DAEMON',
  'ADVERTISE_STARTD', 'ADVERTISE_SCHEDD', 'ADVERTISE_MASTER',
] as const
export type AuthzLevel = (typeof AUTHZ_LEVELS)[number]

const KNOWN = new Set<string>(AUTHZ_LEVELS)

/** Normalises one level name (HTCondor matches case-insensitively; we emit upper case) or throws. */
export function parseAuthzLevel(input: string): AuthzLevel {
  const name = asciiUpper(input.trim().replace(/^condor:\//i, ''))
  if (!KNOWN.has(name)) {
    throw new InvalidScope(`unknown HTCondor authorization level ${quote(input)}; expected one of ${AUTHZ_LEVELS.join(', ')}`)
  }
  return name as AuthzLevel
}

/** `condor:/READ condor:/WRITE`: the scope string HTCondor turns into LimitAuthorization. */
export function condorScope(levels: readonly AuthzLevel[]): string {
  return levels.map((l) => `condor:/${l}`).join(' ')
}

/** Implications (§3.1): WRITE ⇒ READ; ADMINISTRATOR ⇒ WRITE; DAEMON ⇒ WRITE, READ; the rest ⇒ READ. */
const IMPLIES: Record<AuthzLevel, readonly AuthzLevel[]> = {
  READ: [],
  WRITE: ['READ'],
  ADMINISTRATOR: ['WRITE'],
  DAEMON: ['WRITE', 'READ'],
  NEGOTIATOR: ['READ'],
  CONFIG: ['READ'],
  ADVERTISE_STARTD: ['READ'],
  ADVERTISE_SCHEDD: ['READ'],
  ADVERTISE_MASTER: ['READ'],
}

/** The set of levels a scope list effectively grants once HTCondor expands implications. */
export function expandAuthz(levels: Iterable<AuthzLevel>): Set<AuthzLevel> {
  const out = new Set<AuthzLevel>()
  const stack = [...levels]
  while (stack.length > 0) {
    const l = stack.pop()!
    if (out.has(l)) continue
    out.add(l)
    stack.push(...IMPLIES[l])
  }
  return out
}
