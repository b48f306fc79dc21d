import { readJsonBounded, TOO_LARGE } from '../../lib/bounded_body.ts'
import { oauthErrorLine, readOAuthError } from '../../contract/oauth_error.ts'
import { retryAfterSeconds } from '../../contract/retry_after.ts'
import { CREDENTIAL_NAME_PATTERN, credentialTokenPath, goneCredentialState, USER_PATTERN, type GoneCredentialState, type JobTokenResponse } from '../../contract/job_credentials.ts'

/** What one job-token read came to, in the credmon's terms (the contract's status codes, mapped once). */
export type JobTokenResult =
  | { kind: 'token'; token: JobTokenResponse }
  /**
   * 403 with the broker's error answer: no token for this credential; the `.use` must go. `gone` when the broker says the credential
   * itself is gone for good (the contract's `credential` member): then the `.top` goes too.
   */
  | { kind: 'refused'; reason: string; gone?: GoneCredentialState }
  /** 401, or a 400 with a Bearer challenge (our header malformed): our own credd token was refused; keep `.use`, retry later. */
  | { kind: 'unauthorized'; reason: string }
  /** 503, any other status, a 403 that is not the broker's error answer, a network failure or a malformed body: keep `.use`, back off. */
  | { kind: 'unavailable'; reason: string; retryAfter?: number }

export type Fetch = (url: string, init: RequestInit) => Promise<Response>

/** Query parameters of the job-token read; all optional. */
export interface JobTokenQuery {
  /** A token whose remaining life is at least this many seconds is reused by the broker. */
  minimum_seconds?: number
  scopes?: string
  audience?: string
}

/**
 * Checks a job-token response body; undefined for anything that is not one, so a malformed answer is
 * never written where a job will read it. A missing `scope` is tolerated (read as empty): the credmon
 * does not use it.
 */
export function parseJobTokenResponse(body: unknown): JobTokenResponse | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const b = body as Record<string, unknown>
  if (typeof b.access_token !== 'string' || !/^[\x21-\x7e]{1,16384}$/.test(b.access_token)) return undefined
  if (typeof b.token_type !== 'string' || b.token_type.toLowerCase() !== 'bearer') return undefined
  if (typeof b.expires_in !== 'number' || !Number.isInteger(b.expires_in) || b.expires_in <= 0) return undefined
  if (b.scope !== undefined && typeof b.scope !== 'string') return undefined
  return { access_token: b.access_token, token_type: 'Bearer', expires_in: b.expires_in, scope: b.scope ?? '' }
}

export interface BrokerClientOptions {
  /** The broker's base URL (`https://host:port`); a path prefix is kept. */
  brokerUrl: string
  /** The credd IDTOKEN presented as bearer; read on every request so a rotated token file is picked up. */
  credential: () => string
  fetch: Fetch
  /** Per request; default 10 s, the read timeout HTCondor's Vault credmon uses. */
  timeoutMs?: number
}

export interface BrokerClient {
  fetchJobToken(user: string, provider: string, query: JobTokenQuery): Promise<JobTokenResult>
}

/** The credmon's only way to the broker: the job-token read of the wire contract, over HTTP(S). */
export function brokerClient(opts: BrokerClientOptions): BrokerClient {
  const base = opts.brokerUrl.replace(/\/+$/, '')
  return {
    async fetchJobToken(user, provider, query) {
      // Checked here, not only escaped: a name that is not one is a bug in the caller, never a request.
      if (!USER_PATTERN.test(user)) throw new TypeError(`not an HTCondor user name: ${JSON.stringify(user)}`)
      if (!CREDENTIAL_NAME_PATTERN.test(provider)) throw new TypeError(`not a credential name: ${JSON.stringify(provider)}`)
      const q = new URLSearchParams()
      if (query.minimum_seconds !== undefined) q.set('minimum_seconds', String(query.minimum_seconds))
      if (query.scopes) q.set('scopes', query.scopes)
      if (query.audience) q.set('audience', query.audience)
      const url = `${base}${credentialTokenPath(user, provider)}${q.size ? `?${q}` : ''}`
      let credential: string
      try {
        credential = opts.credential().trim()
      } catch (err) {
        return { kind: 'unauthorized', reason: `cannot read the credmon's token: ${(err as Error).message}` }
      }
      let res: Response
      try {
        res = await opts.fetch(url, {
          method: 'GET',
          headers: { authorization: `Bearer ${credential}`, accept: 'application/json' },
          signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
          redirect: 'error',
        })
      } catch (err) {
        return { kind: 'unavailable', reason: `broker unreachable: ${describe(err)}` }
      }
      const read = await readJsonBounded(res.body, MAX_ANSWER_BYTES)
      const body = read === TOO_LARGE ? undefined : read
      const refusal = readOAuthError(body)
      const reason = read === TOO_LARGE ? `HTTP ${res.status} with an answer too large to be the broker's (over ${MAX_ANSWER_BYTES} bytes)` : refusal ? oauthErrorLine(refusal) : `HTTP ${res.status}`
      if (res.status === 200) {
        const token = parseJobTokenResponse(body)
        return token ? { kind: 'token', token } : { kind: 'unavailable', reason: read === TOO_LARGE ? reason : 'broker answered 200 without a valid token response' }
      }
      // Only the broker's own refusal, an OAuth error answer, removes a .use. A 403 without one (a proxy or WAF
      // in front of the broker, an HTML page, a body cut off or too large) says nothing about the credential,
      // and taken as a refusal it would remove every user's .use in one scan: an outage instead.
      if (res.status === 403 && refusal) {
        const gone = goneCredentialState(body)
        return { kind: 'refused', reason, ...(gone ? { gone } : {}) }
      }
      if (res.status === 403 && read !== TOO_LARGE) return { kind: 'unavailable', reason: 'HTTP 403 without the broker\'s error answer (a proxy in front of it?)' }
      // A 400 with a Bearer challenge is the broker refusing our Authorization header as malformed (RFC 6750
      // §3.1: the token file empty, or more than one token on its line): our own token at fault, as with a 401.
      if (res.status === 401 || (res.status === 400 && /^Bearer\b/i.test(res.headers.get('www-authenticate') ?? ''))) return { kind: 'unauthorized', reason }
      const retryAfter = retryAfterSeconds(res.headers.get('retry-after'), Date.now())
      return { kind: 'unavailable', reason, ...(retryAfter !== undefined ? { retryAfter } : {}) }
    },
  }
}

/**
 * The most of an answer the credmon reads. A job-token response carries one token of at most 16 KiB and a
 * refusal a short description; a body past this is a broken broker or proxy, and reading it whole (however
 * long it streams within the timeout) would let one answer exhaust the memory of the process that keeps
 * every user's tokens fresh.
 */
export const MAX_ANSWER_BYTES = 64 * 1024

function describe(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } }
  if (e?.name === 'TimeoutError') return 'timed out'
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err)
}
