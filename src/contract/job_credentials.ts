/**
 * The job-credential wire contract (docs/credmon.md): registering a user's credential at submit time,
 * fetching a fresh job token for the credmon, and the `.top` the storer hands the credd. The broker
 * routes and the credmon client build against exactly these names.
 */

/** An HTCondor (local Unix) user name as the credd names its per-user directory. */
export const USER_NAME_PATTERN = /^[a-z_][a-z0-9_.-]{0,31}$/

/**
 * An HTCondor credential provider name. No `_`: HTCondor separates a provider from a handle with it
 * (`<provider>_<handle>.top`).
 */
export const PROVIDER_NAME_PATTERN = /^[A-Za-z0-9-]{1,64}$/

/** Where the storer registers a credential (POST, the user's IAM token as bearer). */
export const CREDENTIALS_PATH = '/v1/credentials'

/** `mode` of a registration: our credmon ("broker") or HTCondor's unmodified Vault credmon ("vault"). */
export const CREDENTIAL_MODES = ['broker', 'vault'] as const
export type CredentialMode = (typeof CREDENTIAL_MODES)[number]

/** The path of the job-token read for one user's credential; both names are checked, never escaped. */
export function jobTokenPath(user: string, provider: string): string {
  if (!USER_NAME_PATTERN.test(user)) throw new TypeError(`not an HTCondor user name: ${JSON.stringify(user)}`)
  if (!PROVIDER_NAME_PATTERN.test(provider)) throw new TypeError(`not a credential provider name: ${JSON.stringify(provider)}`)
  return `${CREDENTIALS_PATH}/${user}/${provider}/token`
}

/** Query parameters of the job-token read; all optional. */
export interface JobTokenQuery {
  /** A token whose remaining life is at least this many seconds is reused by the broker. */
  minimum_seconds?: number
  scopes?: string
  audience?: string
}

/** 200 body of the job-token read. */
export interface JobTokenResponse {
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  scope?: string
}

/**
 * Checks a job-token response body; returns undefined for anything that is not one, so a client never
 * writes a malformed answer where a job will read it.
 */
export function parseJobTokenResponse(body: unknown): JobTokenResponse | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const b = body as Record<string, unknown>
  if (typeof b.access_token !== 'string' || !/^[\x21-\x7e]{1,16384}$/.test(b.access_token)) return undefined
  if (typeof b.token_type !== 'string' || b.token_type.toLowerCase() !== 'bearer') return undefined
  if (typeof b.expires_in !== 'number' || !Number.isInteger(b.expires_in) || b.expires_in <= 0) return undefined
  if (b.scope !== undefined && typeof b.scope !== 'string') return undefined
  return { access_token: b.access_token, token_type: 'Bearer', expires_in: b.expires_in, ...(b.scope !== undefined ? { scope: b.scope } : {}) }
}

/** `.top` written for mode "broker": no secret, our credmon authenticates with its own credd token. */
export interface BrokerTop {
  broker_url: string
  user: string
  provider: string
  scopes?: string
  audience?: string
}

/** Reads a mode-"broker" `.top`; undefined when it is not one (a Vault or OAuth credmon's file, or junk). */
export function parseBrokerTop(text: string): BrokerTop | undefined {
  let j: unknown
  try { j = JSON.parse(text) } catch { return undefined }
  if (typeof j !== 'object' || j === null) return undefined
  const t = j as Record<string, unknown>
  if (typeof t.broker_url !== 'string' || typeof t.user !== 'string' || typeof t.provider !== 'string') return undefined
  if (!USER_NAME_PATTERN.test(t.user) || !PROVIDER_NAME_PATTERN.test(t.provider)) return undefined
  if (t.scopes !== undefined && typeof t.scopes !== 'string') return undefined
  if (t.audience !== undefined && typeof t.audience !== 'string') return undefined
  return {
    broker_url: t.broker_url, user: t.user, provider: t.provider,
    ...(t.scopes !== undefined ? { scopes: t.scopes as string } : {}),
    ...(t.audience !== undefined ? { audience: t.audience as string } : {}),
  }
}

/** `.top` written for mode "vault", read by HTCondor's Vault credmon. */
export interface VaultTop {
  vault_token: string
  vault_url: string
  scopes?: string
  audience?: string
}
