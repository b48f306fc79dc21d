/**
 * Configuration of the DEVELOPMENT IAM: clients, users and exchange policies, with defaults that cover
 * the broker's tests and `npm run demo`. Everything here is development-only: well-known secrets and
 * passwords, loopback only. Field names follow INDIGO IAM's client and policy model (docs/iam-and-wlcg.md §1).
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import { OperatorError } from '../errors.ts'

export const GRANT = {
  clientCredentials: 'client_credentials',
  password: 'password',
  refreshToken: 'refresh_token',
  tokenExchange: 'urn:ietf:params:oauth:grant-type:token-exchange',
  /** Browser sign-in (the broker's console) through the development login page; PKCE S256 required. */
  authorizationCode: 'authorization_code',
} as const

const GrantType = z.enum([GRANT.clientCredentials, GRANT.password, GRANT.refreshToken, GRANT.tokenExchange, GRANT.authorizationCode])

const ClientSchema = z.object({
  client_id: z.string().min(1).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
  client_secret: z.string().min(8),
  /** IAM (since 1.14.1) enforces the registered method; the development IAM does too. */
  token_endpoint_auth_method: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
  /** The token-exchange grant is admin-only in IAM; here it is simply listed. */
  grant_types: z.array(GrantType).min(1),
  /**
   * Scopes the client may request. A parametric entry covers narrower ones, as IAM's `wlcg-scopes`
   * matchers do: `storage.read:/` covers `storage.read:/cms/x`, `wlcg.groups` covers `wlcg.groups:/cms`.
   */
  scopes: z.array(z.string().min(1)),
  /** IAM's per-client access-token lifetime; exchanged tokens get the EXCHANGING client's value (§1.4). */
  access_token_lifetime: z.number().int().positive().default(3600),
  refresh_token_lifetime: z.number().int().positive().default(30 * 86400),
  /** IAM's "reuse refresh token" off: each refresh returns a new RT and retires the old one (#707). */
  rotate_refresh_tokens: z.boolean().default(false),
  /** Exact redirect URIs for the authorization code grant (RFC 6749 §3.1.2: registered, compared as strings). */
  redirect_uris: z.array(z.string().url()).default([]),
})

const UserSchema = z.object({
  username: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/),
  /** Development-only: used by the `password` grant. */
  password: z.string().min(1),
  /** Stable subject; derived from the username (UUID-shaped, as IAM's are) when omitted. */
  sub: z.string().min(1).max(255).optional(),
  name: z.string().optional(),
  email: z.string().optional(),
  /** Group paths, e.g. `/cms/pilots`, emitted in `wlcg.groups` in this order. */
  groups: z.array(z.string().regex(/^(\/[A-Za-z0-9][A-Za-z0-9_.-]*)+$/, 'must be a group path such as /cms/pilots')).default([]),
  /** IAM account scope policy DENY: these scopes are dropped SILENTLY from this user's tokens (§1.4 layer 3). */
  denied_scopes: z.array(z.string().min(1)).default([]),
})

const ExchangePolicySchema = z.object({
  rule: z.enum(['PERMIT', 'DENY']),
  /** Client id of the subject token's client, or `*` (IAM's ANY selector; BY_ID ranks above ANY). */
  origin: z.string().min(1),
  /** Client id of the exchanging client, or `*`. */
  destination: z.string().min(1),
  /** Scope patterns this policy permits or denies (PATH semantics for parametric scopes); omitted = every scope. */
  scopes: z.array(z.string().min(1)).optional(),
})

export const DevIamConfigSchema = z.object({
  clients: z.array(ClientSchema).min(1),
  users: z.array(UserSchema).default([]),
  exchange_policies: z.array(ExchangePolicySchema).default([]),
  /**
   * IAM_ACCESS_TOKEN_INCLUDE_AUTHN_INFO: put `preferred_username`/`name` (scope `profile`) and `email`
   * (scope `email`) in access tokens. IAM defaults to false; on here so identity templates such as
   * `{preferred_username}@{uid_domain}` have something to read.
   */
  include_authn_info: z.boolean().default(true),
})

export type DevIamConfigInput = z.input<typeof DevIamConfigSchema>
export type DevIamClient = z.output<typeof ClientSchema>
export type DevIamUser = z.output<typeof UserSchema> & { sub: string }
export type DevIamExchangePolicy = z.output<typeof ExchangePolicySchema>
export type DevIamConfig = Omit<z.output<typeof DevIamConfigSchema>, 'users'> & { users: DevIamUser[] }

const USER_SCOPES = [
  'openid', 'profile', 'email', 'offline_access', 'wlcg', 'wlcg.groups',
  'compute.read', 'compute.create', 'compute.modify', 'compute.cancel',
  'storage.read:/', 'storage.create:/', 'storage.modify:/', 'storage.stage:/',
]

/**
 * Service accounts of the example federation in policies/ (cloud-a HTC site, hpc-b SLURM site): each
 * is a robot with client credentials whose client_id the policies match on.
 */
export const FEDERATION_ROBOTS = ['ctb-cloud-a-cm', 'ctb-cloud-a-ap', 'ctb-cloud-a-provisioner', 'ctb-hpc-b-pilot-factory', 'ctb-monitoring'] as const

/**
 * The default development realm: `dev-cli` (a user-facing client with the development-only password
 * grant), `broker` (token exchange + refresh, the broker's own IAM client), `provisioner` (a robot with
 * client credentials), the example federation's robots (FEDERATION_ROBOTS, secret `<id>-secret`);
 * users alice (/cms, /ctb-admins, /htc/users), bob (/cms/pilots), carol (no groups); one exchange
 * policy letting `broker` exchange tokens from any client. Secrets are well known: development only.
 */
export function defaultDevIamConfig(): DevIamConfigInput {
  return {
    clients: [
      { client_id: 'dev-cli', client_secret: 'dev-cli-secret', grant_types: [GRANT.password, GRANT.refreshToken], scopes: USER_SCOPES },
      { client_id: 'broker', client_secret: 'broker-secret', grant_types: [GRANT.tokenExchange, GRANT.refreshToken], scopes: USER_SCOPES },
      {
        client_id: 'provisioner', client_secret: 'provisioner-secret', grant_types: [GRANT.clientCredentials],
        scopes: ['wlcg', 'compute.read', 'compute.create', 'compute.modify', 'compute.cancel'],
      },
      ...FEDERATION_ROBOTS.map((id) => ({ client_id: id, client_secret: `${id}-secret`, grant_types: [GRANT.clientCredentials], scopes: ['wlcg', 'compute.read'] })),
    ],
    users: [
      { username: 'alice', password: 'alice-password', name: 'Alice Dev', email: 'alice@example.org', groups: ['/cms', '/ctb-admins', '/htc/users'] },
      { username: 'bob', password: 'bob-password', name: 'Bob Dev', email: 'bob@example.org', groups: ['/cms/pilots'] },
      { username: 'carol', password: 'carol-password', name: 'Carol Dev', email: 'carol@example.org', groups: [] },
    ],
    exchange_policies: [{ rule: 'PERMIT', origin: '*', destination: 'broker' }],
  }
}

/** A stable, UUID-shaped subject for a user name (IAM subjects are UUIDs; this keeps them stable across restarts). */
export function subjectForUsername(username: string): string {
  const h = createHash('sha256').update(`condor-token-broker dev-iam user:${username}`).digest()
  h[6] = (h[6]! & 0x0f) | 0x80 // RFC 9562 version 8 (custom), variant 10
  h[8] = (h[8]! & 0x3f) | 0x80
  const x = h.subarray(0, 16).toString('hex')
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`
}

/** Validates a development IAM configuration; throws OperatorError with one line per problem. */
export function resolveDevIamConfig(input: DevIamConfigInput = defaultDevIamConfig()): DevIamConfig {
  const parsed = DevIamConfigSchema.safeParse(input)
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(top level)'}: ${i.message}`)
    throw new OperatorError('EDEVIAM', `invalid development IAM configuration:\n${lines.join('\n')}`)
  }
  const c = parsed.data
  const problems: string[] = []
  const ids = new Set<string>()
  for (const cl of c.clients) {
    if (ids.has(cl.client_id)) problems.push(`  clients: duplicate client_id ${cl.client_id}`)
    ids.add(cl.client_id)
  }
  const names = new Set<string>()
  for (const u of c.users) {
    if (names.has(u.username)) problems.push(`  users: duplicate username ${u.username}`)
    names.add(u.username)
  }
  for (const [i, p] of c.exchange_policies.entries()) {
    for (const end of ['origin', 'destination'] as const) {
      if (p[end] !== '*' && !ids.has(p[end])) problems.push(`  exchange_policies.${i}.${end}: unknown client ${p[end]}`)
    }
  }
  if (problems.length > 0) throw new OperatorError('EDEVIAM', `invalid development IAM configuration:\n${problems.join('\n')}`)
  return { ...c, users: c.users.map((u) => ({ ...u, sub: u.sub ?? subjectForUsername(u.username) })) }
}
