import { fetch } from 'undici'
import { caAgent } from '../../lib/ca_agent.ts'
import { readJsonBounded, TOO_LARGE } from '../../lib/bounded_body.ts'
import { CREDENTIALS_PATH, type RegisterCredentialRequest, type RegisterCredentialResponse } from '../../contract/job_credentials.ts'
import { oauthErrorLine, readOAuthError } from '../../contract/oauth_error.ts'

/** A refusal from the broker, with the OAuth error code the storer reports. */
export class RegistrationRefused extends Error {
  readonly error: string
  readonly status: number
  /**
   * `line` is the refusal as oauthErrorLine words it: control characters shown as escapes, since the message
   * is printed to the submitting user's terminal.
   */
  constructor(status: number, error: string, line: string) {
    super(`the broker refused the registration (${status} ${line})`)
    this.status = status
    this.error = error
  }
}

/**
 * The most of an answer the storer reads, as the credmon: a registration answer is a `.top` of a few hundred
 * bytes and a refusal a short description. Past it the answer is not the broker's, and reading on (for as
 * long as it streams within the timeout) would fill the memory of the user's condor_submit.
 */
export const MAX_STORER_ANSWER_BYTES = 64 * 1024

/**
 * POST /v1/credentials with the user's IAM token. Over HTTPS, verified against `caFile` when given (else
 * the system's CAs); a 10 s budget, since condor_submit waits for us.
 */
export async function registerCredential(brokerUrl: string, iamToken: string, body: RegisterCredentialRequest, o: { caFile?: string; timeoutMs?: number } = {}): Promise<RegisterCredentialResponse> {
  const url = new URL(CREDENTIALS_PATH, brokerUrl)
  if (url.protocol !== 'https:') throw new Error(`the broker URL must be https, got ${url.protocol.replace(':', '')}`)
  const budgetMs = o.timeoutMs ?? 10_000
  const agent = caAgent(o.caFile, { connectMs: budgetMs, headersMs: budgetMs, bodyMs: budgetMs })
  // The agent's body timeout is the longest pause between two chunks: an answer trickling in one byte at a
  // time never trips it. The signal bounds the whole exchange, the body's read included.
  const signal = AbortSignal.timeout(budgetMs)
  const outOfTime = () => new Error(`the broker gave no complete answer within ${budgetMs} ms`)
  try {
    let res
    try {
      res = await fetch(url, {
        method: 'POST', dispatcher: agent, signal,
        headers: { authorization: `Bearer ${iamToken}`, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
      })
    } catch (err) {
      if (signal.aborted) throw outOfTime()
      throw err
    }
    const json = await readJsonBounded(res.body as ReadableStream<Uint8Array> | null, MAX_STORER_ANSWER_BYTES)
    if (signal.aborted && json === undefined) throw outOfTime()
    if (json === TOO_LARGE) throw new Error(`the broker's answer is larger than ${MAX_STORER_ANSWER_BYTES} bytes (HTTP ${res.status})`)
    if (res.status !== 201) {
      // Only RFC 6749's error answer names the refusal; anything else at the broker's URL is unexpected.
      const refusal = readOAuthError(json) ?? { error: 'unexpected_response' }
      throw new RegistrationRefused(res.status, refusal.error, oauthErrorLine(refusal))
    }
    const r = json as RegisterCredentialResponse | undefined
    if (!r || typeof r.user !== 'string' || typeof r.provider !== 'string' || typeof r.top !== 'object' || r.top === null) throw new Error('the broker answered 201 without a registration')
    return r
  } finally {
    await agent.close()
  }
}
