import { z } from 'zod'
import { Bool, integer } from '../lib/config_values.ts'

/**
 * The `policy:` section of the broker configuration (policy_dir stays top-level). Kept next to its
 * only consumer; src/config.ts mounts it as `policy`.
 */

const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Policy variables the broker defines from its own settings (trust_domain, policy.uid_domain, issuer). */
const BUILT_IN_VARS = ['TRUST_DOMAIN', 'UID_DOMAIN', 'BROKER_ISSUER'] as const

/** `NAME=value NAME2=value2`: the form CTB_POLICY_VARS takes, since environment variables are flat strings. */
function parseVarList(v: unknown): unknown {
  if (typeof v !== 'string') return v
  const out: Record<string, string> = {}
  for (const item of v.split(/\s+/).filter(Boolean)) {
    const eq = item.indexOf('=')
    if (eq <= 0) return v // not NAME=value: let the schema reject it with its message
    out[item.slice(0, eq)] = item.slice(eq + 1)
  }
  return out
}

export const PolicyConfigSchema = z.strictObject({
  /**
   * Values for `${NAME}` in policy files, e.g. IAM_ISSUER: the exact `iss` of the IAM (trailing slash
   * included). TRUST_DOMAIN, UID_DOMAIN and BROKER_ISSUER are always defined.
   */
  vars: z.preprocess(parseVarList, z.record(
    z.string().regex(VAR_NAME, 'a variable name is letters, digits and _'),
    z.string(),
    { error: 'expected a mapping of NAME: value (or "NAME=value NAME2=value2" in CTB_POLICY_VARS)' },
  )).superRefine((vars, ctx) => {
    // Always trust_domain, policy.uid_domain and issuer (policyContextFromConfig): a value here would be dropped.
    for (const name of BUILT_IN_VARS) {
      if (name in vars) ctx.addIssue({ code: 'custom', path: [name], message: 'is built in and cannot be set here' })
    }
  }).default({}),
  /** `{uid_domain}` in identity templates (users' `<user>@UID_DOMAIN`); default: trust_domain, as in HTCondor. */
  uid_domain: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]*$/, 'must be a domain name').optional(),
  /** Reload when a file in policy_dir changes; SIGHUP always reloads. */
  watch: Bool.default(true),
  /** Wait this long after the last change before reloading (editors write files in several steps). */
  watch_debounce_ms: integer(0, 60_000).default(300),
}).prefault({})

export type PolicyConfig = z.infer<typeof PolicyConfigSchema>
