import { fetch } from 'undici'
import { caAgent } from '../../lib/ca_agent.ts'
import { CREDENTIALS_PATH, type RegisterCredentialRequest, type RegisterCredentialResponse } from '../../contract/job_credentials.ts'
import { readOAuthError } from '../../contract/oauth_error.ts'

/** A refusal from the broker, with the OAuth error code the storer reports. */
export class RegistrationRefused extends Error {
  readonly error: string
  readonly status: number
  constructor(status: number, error: string, description: string | undefined) {
    super(`the broker refused the registration (${status} ${error}${description ? `: ${description}` : ''})`)
    this.status = status
    this.error = error
  }
}

/**
 * POST /v1/credentials with the user's IAM token. Over HTTPS, verified against `caFile` when given (else
 * the system's CAs); a 10 s budget, since condor_submit waits for us.
 */
export async function registerCredential(brokerUrl: string, iamToken: string, body: RegisterCredentialRequest, o: { caFile?: string; timeoutMs?: number } = {}): Promise<RegisterCredentialResponse> {
  const url = new URL(CREDENTIALS_PATH, brokerUrl)
  if (url.protocol !== 'https:') throw new Error(`the broker URL must be https, got ${url.protocol.replace(':', '')}`)
  const agent = caAgent(o.caFile, { connectMs: o.timeoutMs ?? 10_000, headersMs: o.timeoutMs ?? 10_000, bodyMs: o.timeoutMs ?? 10_000 })
  try {
    const res = await fetch(url, {
      method: 'POST', dispatcher: agent,
      headers: { authorization: `Bearer ${iamToken}`, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    })
    const text = await res.text()
    let json: unknown
    try { json = JSON.parse(text) } catch { json = undefined }
    if (res.status !== 201) {
      // Only RFC 6749's error answer names the refusal; anything else at the broker's URL is unexpected.
      const refusal = readOAuthError(json) ?? { error: 'unexpected_response' }
      throw new RegistrationRefused(res.status, refusal.error, refusal.description)
    }
    const r = json as RegisterCredentialResponse | undefined
    if (!r || typeof r.user !== 'string' || typeof r.provider !== 'string' || typeof r.top !== 'object' || r.top === null) throw new Error('the broker answered 201 without a registration')
    return r
  } finally {
    await agent.close()
  }
}
