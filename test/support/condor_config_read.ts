/**
 * Reads HTCondor configuration text the way condor_config_val does for the parts bundles use, written from
 * HTCondor's documented syntax (not from our renderer): `#` starts a comment line, a line ending in `\` is
 * joined to the next, `NAME = value` assigns (the last assignment wins, names are case-insensitive),
 * `use CATEGORY:NAME` pulls in a metaknob. `@=` multi-line values and `include` lines are reported, not
 * followed, since bundles must never contain them. HTCondor itself is not installed on the test machine.
 */
export interface CondorConfig {
  /** Upper-cased knob name → raw value, after line joining. */
  knobs: Map<string, string>
  uses: string[]
  /** Lines condor would treat as `include`, `@=` blocks or otherwise not an assignment. */
  odd: string[]
}

export function readCondorConfig(text: string): CondorConfig {
  const knobs = new Map<string, string>()
  const uses: string[] = []
  const odd: string[] = []
  const physical = text.split('\n')
  for (let i = 0; i < physical.length; i++) {
    let line = physical[i]!
    while (line.endsWith('\\') && i + 1 < physical.length) line = line.slice(0, -1) + physical[++i]!
    const trimmed = line.trim()
    if (trimmed === '' || trimmed.startsWith('#')) continue
    const use = /^use\s+(\S+)$/i.exec(trimmed)
    if (use) { uses.push(use[1]!); continue }
    const assign = /^([A-Za-z_][A-Za-z0-9_.]*)\s*=(.*)$/.exec(trimmed)
    if (assign && !assign[2]!.startsWith('@')) { knobs.set(assign[1]!.toUpperCase(), assign[2]!.trim()); continue }
    odd.push(trimmed)
  }
  return { knobs, uses, odd }
}

/** An ALLOW/DENY list as HTCondor splits it: at commas and white space. */
export function allowEntries(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter((e) => e !== '')
}
