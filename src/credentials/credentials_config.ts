import { z } from 'zod'
import { PROVIDER_PATTERN, VAULT_DEFAULT_PORT } from '../contract/job_credentials.ts'
import { Bool, integer, seconds } from '../lib/config_values.ts'

/**
 * One credential provider as users name it in `use_oauth_services`. `iam`: the broker keeps the user's
 * IAM refresh token and hands jobs IAM access tokens; `scitoken`: the broker mints SciTokens/WLCG tokens
 * itself. Either way `role` names the policy grant that bounds the scopes, audience and the HTCondor user
 * (the part of the grant's identity before `@`).
 */
const Provider = z.strictObject({
  name: z.string().regex(PROVIDER_PATTERN, 'must be 1 to 64 letters, digits or "-" (HTCondor reserves "_")'),
  kind: z.enum(['iam', 'scitoken']),
  role: z.string().min(1),
})

/**
 * `credentials:` section: users' job credentials (docs/job-credentials.md). Off by default. The key that
 * seals refresh tokens is read from the environment variable `key_env` when set, else from `key_file`
 * (default <data_dir>/keys/credentials.key, created outside production only); never from the database.
 */
export const CredentialsConfigSchema = z.strictObject({
  enabled: Bool.default(false),
  key_file: z.string().min(1).optional(),
  /** Not a CTB_ name: those are configuration overrides, and a key must never land in a config file. */
  key_env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name')
    .refine((n) => !n.startsWith('CTB_'), 'must not start with CTB_ (those name configuration overrides)')
    .default('CONDOR_TOKEN_BROKER_CREDENTIAL_KEY'),
  /** A token with at least this much life left is reused when the request names no minimum_seconds. */
  minimum_seconds: seconds({ min: 0, max: 86400 }).default(600),
  /**
   * kind scitoken: IAM must have confirmed the user (a refresh of the refresh token obtained at
   * registration) at most this long before a SciToken is minted; older, the broker asks IAM again first.
   */
  iam_recheck_interval: seconds({ min: 60, max: 86400 }).default(3600),
  /**
   * kind scitoken, IAM unavailable: minting goes on while the last confirmation is younger than the
   * interval plus this grace, then the token endpoint answers 503. Default: the interval itself.
   */
  iam_recheck_grace: seconds({ min: 0, max: 86400 }).optional(),
  /**
   * Live (unrevoked) credentials one HTCondor user may hold, handles included: each is a row and a
   * refresh token the broker keeps fresh at IAM. A registration that would add one more is refused;
   * registering one of them again replaces it and is never refused for this.
   */
  max_per_user: integer(1, 100_000).default(50),
  /** Gone: which credds may fetch job tokens is the policy's `fetched_by` on the provider's grant. */
  credd_roles: z.never({ error: 'is gone: the policy decides which credds may fetch job tokens; list their roles (and optionally sites) under fetched_by in the grant each provider names (docs/job-credentials.md)' }).optional(),
  /** The broker URL written into `.top` files; default: the broker's issuer. */
  broker_url: z.string().url().refine((u) => u.startsWith('https://'), 'must be an https URL').optional(),
  providers: z.array(Provider).default([]),
  /** The Vault-compatible read path for HTCondor's unmodified Vault credmon (a second TLS listener). */
  vault: z.strictObject({
    enabled: Bool.default(false),
    host: z.string().min(1).default('127.0.0.1'),
    port: integer(0, 65535).default(VAULT_DEFAULT_PORT),
    /**
     * `https://HOST:8200` as the credmon reaches it; default https://localhost:<port>. HTCondor's Vault
     * credmon reads a vault_url only with https, port 8200 and a path starting /v1, and the broker appends
     * that path here: anything else would be refused by the credmon in every .top, so it is refused now.
     */
    public_url: z.string().url().refine(vaultCredmonReaches, `must be https://HOST:${VAULT_DEFAULT_PORT} with no path or user (HTCondor's Vault credmon accepts no other port)`).optional(),
  }).prefault({}),
}).superRefine((c, ctx) => {
  const seen = new Set<string>()
  c.providers.forEach((p, i) => {
    if (seen.has(p.name)) ctx.addIssue({ code: 'custom', path: ['providers', i, 'name'], message: `provider "${p.name}" is defined twice` })
    seen.add(p.name)
  })
  if (c.enabled && c.providers.length === 0) ctx.addIssue({ code: 'custom', path: ['providers'], message: 'credentials.enabled needs at least one provider' })
  if (c.vault.enabled && !c.enabled) ctx.addIssue({ code: 'custom', path: ['vault', 'enabled'], message: 'the Vault-compatible listener needs credentials.enabled' })
  // The default public_url is https://localhost:<port>: on a port other than 8200 every .top would name a
  // URL the Vault credmon refuses. Port 0 (an ephemeral port, for tests) is left to the caller.
  if (c.vault.enabled && c.vault.public_url === undefined && c.vault.port !== VAULT_DEFAULT_PORT && c.vault.port !== 0) {
    ctx.addIssue({ code: 'custom', path: ['vault', 'public_url'], message: `is needed when vault.port is not ${VAULT_DEFAULT_PORT}: HTCondor's Vault credmon reaches the broker only at https://HOST:${VAULT_DEFAULT_PORT} (a proxy or port forward)` })
  }
})

function vaultCredmonReaches(url: string): boolean {
  // zod runs this even when .url() has already refused the string.
  if (!URL.canParse(url)) return false
  const u = new URL(url)
  // No user:password either: it would be written into every .top, which the credd hands to the credmon.
  return u.protocol === 'https:' && Number(u.port) === VAULT_DEFAULT_PORT && u.pathname === '/' && u.search === '' && u.hash === ''
    && u.username === '' && u.password === ''
}

export type CredentialsConfig = z.infer<typeof CredentialsConfigSchema>
export type CredentialProvider = CredentialsConfig['providers'][number]
