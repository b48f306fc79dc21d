import type { RunningDevIam } from './start_dev_iam.ts'

export interface DevIamTokenResult {
  status: number
  /** The parsed JSON body: a token response or an OAuth error. */
  body: Record<string, unknown>
}

/**
 * POSTs a form to the development IAM's token endpoint with client_secret_basic, the way any IAM client
 * would. For tests and the demo; `fetchImpl` lets HTTPS callers pass a fetch that trusts the dev CA.
 * @see RFC 6749 §2.3.1, §3.2
 */
export async function devIamTokenRequest(
  iam: Pick<RunningDevIam, 'tokenEndpoint' | 'config'>,
  clientId: string,
  params: Record<string, string | readonly string[]>,
  fetchImpl: typeof fetch = globalThis.fetch,
): Promise<DevIamTokenResult> {
  const client = iam.config.clients.find((c) => c.client_id === clientId)
  if (!client) throw new TypeError(`no development IAM client ${clientId}`)
  const form = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) for (const x of typeof v === 'string' ? [v] : v) form.append(k, x)
  // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
  const basic = Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString('base64')
  const res = await fetchImpl(iam.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: `Basic ${basic}` },
    body: form,
  })
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

/**
 * A USER access token from the development IAM via its development-only password grant (client
 * `dev-cli` by default), e.g. for alice with `wlcg.groups`. Throws with IAM's error when refused.
 */
export async function devIamUserToken(
  iam: Pick<RunningDevIam, 'tokenEndpoint' | 'config'>,
  username: string,
  options: { scope?: string; audience?: string; clientId?: string; fetch?: typeof fetch } = {},
): Promise<{ accessToken: string; refreshToken?: string; scope: string; expiresIn: number }> {
  const user = iam.config.users.find((u) => u.username === username)
  if (!user) throw new TypeError(`no development IAM user ${username}`)
  const params: Record<string, string> = {
    grant_type: 'password', username, password: user.password,
    scope: options.scope ?? 'openid profile wlcg wlcg.groups',
  }
  if (options.audience) params.audience = options.audience
  const { status, body } = await devIamTokenRequest(iam, options.clientId ?? 'dev-cli', params, options.fetch)
  if (status !== 200 || typeof body.access_token !== 'string') {
    throw new Error(`development IAM refused a token for ${username}: ${String(body.error)} ${String(body.error_description ?? '')}`.trim())
  }
  return {
    accessToken: body.access_token,
    ...(typeof body.refresh_token === 'string' ? { refreshToken: body.refresh_token } : {}),
    scope: String(body.scope ?? ''),
    expiresIn: Number(body.expires_in),
  }
}
