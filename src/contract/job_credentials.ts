/**
 * The job-credential wire contract between the broker and the programs on an access point: the
 * credential storer run at condor_submit, our credmon, and HTCondor's own Vault credmon. Clients may
 * import this file; it depends on nothing but zod.
 * @see docs/job-credentials.md
 */
import { z } from 'zod'

/** An HTCondor (local Unix) user name. */
export const USER_PATTERN = /^[a-z_][a-z0-9_.-]{0,31}$/
/** An HTCondor credential provider name: no `_`, which HTCondor uses to separate a handle. */
export const PROVIDER_PATTERN = /^[A-Za-z0-9-]{1,64}$/
/** A handle (`<provider>_oauth_permissions_<handle>`): the same characters as a provider. */
export const HANDLE_PATTERN = PROVIDER_PATTERN
/**
 * The name a credential is stored under, at the credd (`<name>.top`, `<name>.use`) and at the broker:
 * `<provider>` or `<provider>_<handle>`. Each handle carries its own scopes and audience, so it is its own
 * credential: registering one handle never replaces another.
 */
export const CREDENTIAL_NAME_PATTERN = /^[A-Za-z0-9-]{1,64}(?:_[A-Za-z0-9-]{1,64})?$/

/** The largest `minimum_seconds` the job-token read takes (seven digits); a larger one is `400 invalid_request`. */
export const MAX_MINIMUM_SECONDS = 9_999_999

/** `<provider>` or `<provider>_<handle>`, as HTCondor names the credential. */
export function credentialName(provider: string, handle?: string): string {
  return handle === undefined ? provider : `${provider}_${handle}`
}

/** The provider a credential name belongs to: the part before HTCondor's handle separator. */
export function providerOfCredential(name: string): string {
  const cut = name.indexOf('_')
  return cut < 0 ? name : name.slice(0, cut)
}

/** Registration endpoint (POST, bearer = the user's IAM access token). */
export const CREDENTIALS_PATH = '/v1/credentials'

/** The token endpoint our credmon calls for one user and provider (GET, bearer = the credd's IDTOKEN). */
export function credentialTokenPath(user: string, provider: string): string {
  return `${CREDENTIALS_PATH}/${encodeURIComponent(user)}/${encodeURIComponent(provider)}/token`
}

/** The default port of the Vault-compatible listener: HTCondor's Vault credmon accepts no other. */
export const VAULT_DEFAULT_PORT = 8200
/** Path prefix of Vault-compatible reads; `vault_url` is `https://HOST:8200` + this + `/<user>/<provider>`. */
export const VAULT_CREDS_PREFIX = '/v1/secret/oauth/creds'
/** The header HTCondor's Vault credmon sends its `vault_token` in. */
export const VAULT_TOKEN_HEADER = 'X-Vault-Token'
/** The error text that makes HTCondor's Vault credmon delete `.top` and `.use`. */
export const VAULT_PERMISSION_DENIED = 'permission denied'

/** Where the credd gets its refresh input: "broker" for our credmon, "vault" for HTCondor's Vault credmon. */
export const REGISTRATION_MODES = ['broker', 'vault'] as const
export type RegistrationMode = (typeof REGISTRATION_MODES)[number]

const ScopeList = z.string().max(4096).regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'must be space-separated scope tokens')
const Audience = z.string().min(1).max(1024).regex(/^[\x21-\x7e]+$/, 'must be one printable ASCII string without spaces')

/** POST /v1/credentials body. Never carries the user: the broker derives it from the token under policy. */
export const RegisterCredentialRequest = z.strictObject({
  provider: z.string().regex(PROVIDER_PATTERN, 'must be 1 to 64 letters, digits or "-"'),
  /** The submit file's handle: the credential is stored as `<provider>_<handle>`, apart from the provider's others. */
  handle: z.string().regex(HANDLE_PATTERN, 'must be 1 to 64 letters, digits or "-"').optional(),
  scopes: ScopeList.optional(),
  audience: Audience.optional(),
  mode: z.enum(REGISTRATION_MODES).default('broker'),
})
export type RegisterCredentialRequest = z.input<typeof RegisterCredentialRequest>

/** `.top` for our credmon: no secret (the credmon authenticates with its own credd token). */
export interface BrokerTop {
  broker_url: string
  user: string
  /** The credential's name (CREDENTIAL_NAME_PATTERN): the provider, or `<provider>_<handle>`. */
  provider: string
  scopes?: string
  audience?: string
}

/** `.top` for HTCondor's Vault credmon: `vault_token` is a bearer secret for this one credential. */
export interface VaultTop {
  vault_token: string
  vault_url: string
  scopes?: string
  audience?: string
}

/** 201 answer to a registration. */
export interface RegisterCredentialResponse {
  user: string
  /** The credential's name: the provider, or `<provider>_<handle>`. */
  provider: string
  top: BrokerTop | VaultTop
}

/** 200 answer of the token endpoint (sent with Cache-Control: no-store). */
export interface JobTokenResponse {
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  scope: string
}

/**
 * What the `credential` member of a job-token 403 says: the credential itself is gone at the broker, and
 * only a new registration (the user's next condor_submit, once the credd no longer holds it) brings it
 * back. `unknown`: nothing is registered for this user and name. `revoked`: revoked, by an admin, by IAM
 * refusing the stored refresh token, or otherwise. `outdated`: registered in a form the broker can no
 * longer serve (it holds no IAM refresh token). A 403 without the member is a refusal an operator can
 * lift (policy, `fetched_by`, a revoked identity): the credential is still there and is served again
 * once it is lifted.
 */
export const GONE_CREDENTIAL_STATES = ['unknown', 'revoked', 'outdated'] as const
export type GoneCredentialState = (typeof GONE_CREDENTIAL_STATES)[number]

/**
 * The `credential` member of a job-token 403 body when it names one of GONE_CREDENTIAL_STATES; undefined
 * otherwise, including for a value this contract does not define: only a state defined here lets a
 * client end what the credd holds.
 */
export function goneCredentialState(body: unknown): GoneCredentialState | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const v = (body as Record<string, unknown>).credential
  return GONE_CREDENTIAL_STATES.find((s) => s === v)
}

/** The Vault-compatible success body; errors are `{"errors": [...]}`. */
export interface VaultReadResponse {
  data: { access_token: string }
}

/** Parses a user name from a path segment; undefined when it is not one. */
export function parseUser(s: string): string | undefined {
  return USER_PATTERN.test(s) ? s : undefined
}

/** Parses a credential name (`<provider>` or `<provider>_<handle>`) from a path segment; undefined when it is not one. */
export function parseProvider(s: string): string | undefined {
  return CREDENTIAL_NAME_PATTERN.test(s) ? s : undefined
}
