/**
 * Identity templates: `pilot-{site}-{slurm_job_id}@pilots.{trust_domain}` and the like. Parsed and
 * partly evaluated at load (constants folded in), rendered per request by joining prepared parts.
 */

/** Placeholders filled from the verified IAM caller. */
export const SUBJECT_PLACEHOLDERS = ['sub', 'preferred_username', 'client_id'] as const
/** Placeholders filled from the request's `host`. */
export const HOST_PLACEHOLDERS = ['host', 'host_short'] as const
/** Placeholders fixed by broker configuration and the grant; folded into literals at load. */
export const CONSTANT_PLACEHOLDERS = ['trust_domain', 'uid_domain', 'role'] as const
/** `{site}`: the site the grant binds (its `sites:`), never a value the caller sends. */
export const SITE_PLACEHOLDER = 'site'
/** `{jti8}`: the first 8 hex digits of the token's fresh `jti`, making each identity unique. */
export const GENERATED_PLACEHOLDERS = ['jti8'] as const

export const BUILTIN_PLACEHOLDERS: ReadonlySet<string> = new Set([
  ...SUBJECT_PLACEHOLDERS, ...HOST_PLACEHOLDERS, ...CONSTANT_PLACEHOLDERS, ...GENERATED_PLACEHOLDERS, SITE_PLACEHOLDER,
])

export type TemplatePart = { literal: string } | { placeholder: string }

/** Splits a template into literal and `{name}` parts; a stray `{` or `}` is an error (returned, not thrown). */
export function parseTemplate(template: string): { parts: TemplatePart[] } | { error: string } {
  const parts: TemplatePart[] = []
  const re = /\{([^{}]*)\}/g
  let last = 0
  for (let m = re.exec(template); m; m = re.exec(template)) {
    const literal = template.slice(last, m.index)
    if (/[{}]/.test(literal)) return { error: `unbalanced brace in template "${template}"` }
    if (literal) parts.push({ literal })
    const name = m[1]!
    if (!/^[a-z][a-z0-9_]*$/.test(name)) return { error: `invalid placeholder "{${name}}" in template "${template}"` }
    parts.push({ placeholder: name })
    last = m.index + m[0].length
  }
  const tail = template.slice(last)
  if (/[{}]/.test(tail)) return { error: `unbalanced brace in template "${template}"` }
  if (tail) parts.push({ literal: tail })
  return { parts }
}

/** Names of the placeholders a parsed template uses. */
export function placeholdersOf(parts: readonly TemplatePart[]): string[] {
  return parts.flatMap((p) => ('placeholder' in p ? [p.placeholder] : []))
}

/**
 * Whether a value the caller chooses goes into the user part of an identity template (the part before its last
 * literal `@`, or the whole template without one, as HTCondor splits an identity): its own (SUBJECT_PLACEHOLDERS),
 * or one it picks within the grant's bounds ({host}, {host_short}, a request parameter). Not a constant, {site}
 * (the policy's) or {jti8} (the broker's).
 */
export function userPartNamesCaller(parts: readonly TemplatePart[]): boolean {
  const at = parts.findLastIndex((p) => 'literal' in p && p.literal.includes('@'))
  const user = at < 0 ? parts : parts.slice(0, at)
  const notCallers: ReadonlySet<string> = new Set([...CONSTANT_PLACEHOLDERS, ...GENERATED_PLACEHOLDERS, SITE_PLACEHOLDER])
  return user.some((p) => 'placeholder' in p && !notCallers.has(p.placeholder))
}

/** Replaces constant placeholders by their values and merges adjacent literals. */
export function foldConstants(parts: readonly TemplatePart[], constants: Readonly<Record<string, string>>): TemplatePart[] {
  const out: TemplatePart[] = []
  for (const p of parts) {
    const folded: TemplatePart = 'placeholder' in p && p.placeholder in constants ? { literal: constants[p.placeholder]! } : p
    const prev = out.at(-1)
    if ('literal' in folded && prev && 'literal' in prev) out[out.length - 1] = { literal: prev.literal + folded.literal }
    else out.push(folded)
  }
  return out
}
