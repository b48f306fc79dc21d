import { fetch as undiciFetch } from 'undici'
import { caAgent } from '../../lib/ca_agent.ts'
import { readBounded, TOO_LARGE } from '../../lib/bounded_body.ts'
import { unverifiedJwtPayload } from '../../lib/jwt_payload.ts'
import { readOAuthError, shownDescription } from '../../contract/oauth_error.ts'
import { retryAfterSeconds } from '../../contract/retry_after.ts'
import { PILOT_ENROLMENT_TOKEN_TYPE } from '../../contract/pilot.ts'
import { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE } from '../../contract/token_exchange.ts'

/** A refusal or failure from the broker, with the OAuth error it sent; never holds a token. */
export class BrokerCallError extends Error {
  readonly status: number
  readonly error: string
  /**
   * The broker's error_description, for a caller that words the refusal in its own terms; as shownDescription
   * makes it (control characters as escapes, cut short), since the CLI prints it to the operator's terminal.
   */
  readonly description: string | undefined
  constructor(what: string, status: number, error: string, description?: string) {
    const shown = description ? shownDescription(description) : undefined
    super(`${what}: ${status} ${error}${shown ? `: ${shown}` : ''}`)
    this.name = 'BrokerCallError'
    this.status = status
    this.error = error
    this.description = shown
  }
}

/**
 * A host certificate answer the client refuses, though the broker signed (and audited) the certificate before
 * answering. `issuedSerial` is the answer's serial where it is one the broker could revoke, so the caller can.
 */
export class RefusedCertificateAnswer extends BrokerCallError {
  readonly issuedSerial: string | undefined
  constructor(what: string, why: string, issuedSerial: string | undefined) {
    super(what, 200, 'invalid_response', why)
    this.issuedSerial = issuedSerial
  }
}

/** `headers` is read only for a 503's Retry-After; a fetch without it (a test double) gets the default wait. */
export type Fetch = (url: string, init: { method: string; headers: Record<string, string>; body?: string }) => Promise<{ status: number; headers?: { get(name: string): string | null }; text(): Promise<string> }>

/**
 * How provisioning retries a 503 (temporarily_unavailable, RFC 6749 §4.1.2.1: the broker's audit store or
 * IAM out of reach, its queue full; nothing was issued, so the request may be sent again): at most
 * `attempts` requests in all, each wait the broker's Retry-After (RFC 9110 §10.2.3: delay-seconds, or the
 * time until an HTTP-date, which a proxy in front of the broker may send) or `defaultDelaySeconds`, never above `maxDelaySeconds`. At most about a minute and a half per call, so a
 * broker that stays down fails the render with its own refusal rather than holding it. Nothing else is
 * retried: a 500 is a broker fault, a 4xx a refusal (429 too: the operator's rate limit, theirs to weigh).
 */
export const PROVISION_RETRY = { attempts: 4, defaultDelaySeconds: 2, maxDelaySeconds: 30 } as const

/** A wait for a 503's Retry-After about to begin: which request, which attempt comes next, how long. */
export interface RetryWait { method: string; path: string; attempt: number; attempts: number; seconds: number }

/**
 * The most of one answer provisioning reads. Its largest are audit pages (up to 1000 records at the broker's
 * limit, 100 by default) and the pool CA; past this the answer is not the broker's, and the 30 s timeout alone
 * would let it stream hundreds of MiB into the operator's process.
 */
export const MAX_PROVISION_ANSWER_BYTES = 8 * 1024 * 1024

/** What text() of fetchWithCa throws past MAX_PROVISION_ANSWER_BYTES. */
class AnswerTooLarge extends Error {}
/** What text() of fetchWithCa throws when the answer ended early: its time budget ran out, or it broke off. */
class AnswerCutShort extends Error {}

/** A fetch that trusts `caFile` (the broker's TLS CA) in addition to nothing else, with timeouts. */
export function fetchWithCa(caFile: string | undefined, timeoutMs = 30_000): Fetch {
  const dispatcher = caAgent(caFile, { connectMs: timeoutMs, headersMs: timeoutMs, bodyMs: timeoutMs })
  return async (url, init) => {
    // The agent's body timeout is the longest pause between two chunks, which an answer trickling in a byte at
    // a time never reaches: the signal bounds each request as a whole, its answer's read included.
    const signal = AbortSignal.timeout(timeoutMs)
    let res
    try {
      res = await undiciFetch(url, { ...init, dispatcher, signal })
    } catch (err) {
      if (signal.aborted) throw new Error(`cannot reach the broker: no answer within ${timeoutMs} ms`)
      throw err
    }
    return {
      status: res.status,
      headers: res.headers,
      text: async () => {
        const bytes = await readBounded(res.body as ReadableStream<Uint8Array> | null, MAX_PROVISION_ANSWER_BYTES)
        if (bytes === TOO_LARGE) throw new AnswerTooLarge(`the answer is larger than ${MAX_PROVISION_ANSWER_BYTES} bytes`)
        if (bytes === undefined) throw new AnswerCutShort(signal.aborted ? `no complete answer within ${timeoutMs} ms` : 'the answer broke off before its end')
        return bytes.toString('utf8')
      },
    }
  }
}

/**
 * Whether two URLs name the same broker: compared as WHATWG URLs (host case and the scheme's default port
 * do not count) without trailing slashes. Anything that does not parse as a URL names no broker.
 */
export function sameBrokerUrl(a: string, b: string): boolean {
  const norm = (u: string) => { try { return new URL(u).href.replace(/\/+$/, '') } catch { return undefined } }
  const x = norm(a)
  return x !== undefined && x === norm(b)
}

export interface IssuedToken { token: string; expiresIn: number }

/** Three base64url parts: a JWS in compact form, or a pilot enrolment credential (`ctbpe1.<claims>.<mac>`). */
const COMPACT_TOKEN = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
/**
 * The broker's issuer goes into a comment line of every 50-broker.conf and a SCITOKENS rule of condor_mapfile,
 * which HTCondor ends at the end of the line and splits at spaces: one https URL, none of space, comma, quote,
 * backslash or `$` (the shape config_values.ts holds template URIs to).
 */
const ISSUER = /^https:\/\/[A-Za-z0-9._~:/?#@!&'()*+;=%[\]-]{1,1000}$/
/** A certificate's serial is lower-case hex at the broker; teardown revokes by it. */
const SERIAL = /^[0-9a-fA-F]{1,64}$/
const PEM_CERTIFICATE = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+\n-----END CERTIFICATE-----\s*$/

function invalid(what: string, why: string): BrokerCallError {
  return new BrokerCallError(what, 200, 'invalid_response', why)
}

/**
 * The token of a token endpoint answer, read as far as render needs: a JWT or enrolment credential whose claims
 * carry a jti, which the manifest lists and a failed render revokes.
 */
function issuedToken(what: string, body: Record<string, unknown>): IssuedToken {
  const token = body.access_token
  let claims: unknown
  // Compact form only: the token file in tokens.d is read line by line, so anything else (a newline) would add a token.
  try { claims = typeof token === 'string' && COMPACT_TOKEN.test(token) ? unverifiedJwtPayload(token) : undefined } catch { /* not a token */ }
  if (typeof claims !== 'object' || claims === null || typeof (claims as { jti?: unknown }).jti !== 'string') throw invalid(what, 'access_token is not a token with a jti')
  return { token: token as string, expiresIn: Number(body.expires_in) }
}
export interface IssuedCertificate { certificate: string; serial: string; notAfter: number }

/**
 * The provisioning client's view of the broker: HTTP only, wire names from src/contract. The bearer is
 * the operator's IAM access token; it is sent to the broker and nowhere else.
 */
export class BrokerClient {
  readonly base: string
  readonly #send: Fetch
  readonly #bearer: string
  readonly #sleep: (ms: number) => Promise<void>
  readonly #onRetry: ((wait: RetryWait) => void) | undefined
  readonly #now: () => number

  /**
   * `sleep`: how a retry waits (tests pass their own). `onRetry`: told of each wait before it begins, so the
   * CLI can say why the terminal is quiet (up to 30 s a wait, three waits a call). `now`: the clock an
   * HTTP-date Retry-After is counted from (milliseconds, as Date.now).
   */
  constructor(options: { url: string; bearer: string; fetch: Fetch; sleep?: (ms: number) => Promise<void>; onRetry?: (wait: RetryWait) => void; now?: () => number }) {
    this.base = options.url.replace(/\/+$/, '')
    this.#send = options.fetch
    this.#bearer = options.bearer
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)))
    this.#onRetry = options.onRetry
    this.#now = options.now ?? Date.now
  }

  /**
   * Set when a call met 503 on every attempt: the broker is down, not blinking. The calls after it (a failed
   * render's revocations, a teardown's) then ask once each instead of waiting out the retry budget again
   * per item, which held the terminal for minutes; the first answer other than 503 clears it.
   */
  #down = false

  /** One request, sent again on a 503 as PROVISION_RETRY says; the last answer is returned whatever it is. */
  async #fetch(url: string, init: Parameters<Fetch>[1]): ReturnType<Fetch> {
    const attempts = this.#down ? 1 : PROVISION_RETRY.attempts
    for (let attempt = 1; ; attempt++) {
      const res = await this.#send(url, init)
      if (res.status !== 503) { this.#down = false; return res }
      if (attempt >= attempts) { this.#down = true; return res }
      await res.text().catch(() => '')
      const asked = retryAfterSeconds(res.headers?.get('retry-after'), this.#now()) ?? PROVISION_RETRY.defaultDelaySeconds
      const seconds = Math.min(asked, PROVISION_RETRY.maxDelaySeconds)
      this.#onRetry?.({ method: init.method, path: url.startsWith(this.base) ? url.slice(this.base.length) : url, attempt: attempt + 1, attempts, seconds })
      await this.#sleep(seconds * 1000)
    }
  }

  /** An IDTOKEN for one daemon role on one host (RFC 8693 exchange of the operator's token). */
  async daemonToken(role: string, host: string, site?: string): Promise<IssuedToken> {
    const body = await this.#form(`token for role ${role} on ${host}`, {
      grant_type: GRANT_TYPE_TOKEN_EXCHANGE, subject_token: this.#bearer, subject_token_type: TOKEN_TYPE.accessToken,
      requested_token_type: TOKEN_TYPE.idtoken, role, host, ...(site ? { site } : {}),
    })
    return issuedToken(`token for role ${role} on ${host}`, body)
  }

  /** A pilot enrolment credential for `count` pilots of one SLURM job (docs/pilots.md). */
  /** The answer as a whole too: it says what the group's pilots will be called (PILOT_IDENTITY_FIELD). */
  async pilotEnrolment(role: string, site: string, count: number, lifetime: number): Promise<IssuedToken & { answer: Record<string, unknown> }> {
    const body = await this.#form(`pilot enrolment for site ${site}`, {
      grant_type: GRANT_TYPE_TOKEN_EXCHANGE, subject_token: this.#bearer, subject_token_type: TOKEN_TYPE.accessToken,
      requested_token_type: PILOT_ENROLMENT_TOKEN_TYPE, role, site, pilot_count: String(count), lifetime: String(lifetime),
    })
    return { ...issuedToken(`pilot enrolment for site ${site}`, body), answer: body }
  }

  async certificate(req: { csr: string; role: string; site?: string; dns: string[]; ip: string[] }): Promise<IssuedCertificate> {
    const what = `host certificate for ${req.dns[0]}`
    const body = await this.#json(what, 'POST', '/v1/certificates', req)
    // Written to certs/host.crt and manifest.json: a certificate without a serial could never be revoked by teardown.
    if (typeof body.certificate !== 'string' || !PEM_CERTIFICATE.test(body.certificate) || typeof body.serial !== 'string' || !SERIAL.test(body.serial)
      || typeof body.not_after !== 'number' || !Number.isSafeInteger(body.not_after)) {
      const serial = typeof body.serial === 'string' && SERIAL.test(body.serial) ? body.serial : undefined
      throw new RefusedCertificateAnswer(what, 'the answer is not a PEM certificate with a hex serial and not_after', serial)
    }
    return { certificate: body.certificate, serial: body.serial, notAfter: body.not_after }
  }

  /** What the policy answers for a certificate request; nothing is signed (POST /v1/certificates with dry_run). */
  async checkCertificate(req: { role: string; site?: string; dns: string[]; ip: string[] }): Promise<{ allow: boolean; rule?: string; reason?: string; lifetime?: number }> {
    const what = `certificate check for ${req.dns[0]}`
    const body = await this.#json(what, 'POST', '/v1/certificates', { ...req, dry_run: true })
    const answer = body.dry_run as { allow?: unknown } | undefined
    if (typeof answer !== 'object' || answer === null || typeof answer.allow !== 'boolean') throw invalid(what, 'no dry_run answer')
    return answer as { allow: boolean; rule?: string; reason?: string; lifetime?: number }
  }

  async caCertificate(): Promise<string> {
    const res = await this.#fetch(`${this.base}/v1/ca/certificate`, { method: 'GET', headers: {} })
    const text = await this.#text('pool CA certificate', res)
    if (res.status !== 200) throw new BrokerCallError('pool CA certificate', res.status, res.status === 404 ? 'not_found' : 'error', res.status === 404 ? 'the broker has no pool CA (run "condor-token-broker ca init" there)' : undefined)
    // Copied into every bundle as the CA HTCondor trusts: an error page there would fail only on the nodes.
    if (!/^-----BEGIN CERTIFICATE-----\r?\n[\s\S]+\n-----END CERTIFICATE-----\s*$/.test(text)) throw invalid('pool CA certificate', 'the answer holds no PEM certificate')
    return text
  }

  async metadata(): Promise<{ issuer: string }> {
    const res = await this.#fetch(`${this.base}/.well-known/openid-configuration`, { method: 'GET', headers: {} })
    if (res.status !== 200) throw new BrokerCallError('broker metadata', res.status, 'error')
    const body = await this.#read('broker metadata', res)
    if (typeof body.issuer !== 'string') throw invalid('broker metadata', 'no issuer')
    if (!ISSUER.test(body.issuer) || !URL.canParse(body.issuer)) throw invalid('broker metadata', 'the issuer is not an https URL')
    return { issuer: body.issuer }
  }

  /** What the policy would answer (admin API): no token is minted. */
  async explain(request: Record<string, unknown>): Promise<Record<string, unknown>> {
    const body = await this.#json('policy explain', 'POST', '/admin/policy/explain', request)
    const decision = body.decision as { allow?: unknown } | undefined
    if (typeof decision !== 'object' || decision === null || typeof decision.allow !== 'boolean') throw invalid('policy explain', 'no decision')
    return body
  }

  async revokeJti(jti: string, reason: string, exp?: number): Promise<void> {
    await this.#json(`revocation of jti ${jti}`, 'POST', '/v1/revocations', { jti, reason, ...(exp !== undefined ? { exp } : {}) })
  }

  /**
   * Revokes a pilot group by its enrolment credential's jti (`pilot-enrolment`): its redemptions, its pilots'
   * renewals, and, through SEC_TOKEN_REVOCATION_EXPR (`ctb_enrolment`), its running pilots at the collector.
   * No exp: the broker holds the entry until every token it has issued so far has expired.
   */
  async revokePilotEnrolment(jti: string, reason: string): Promise<void> {
    await this.#json(`revocation of pilot enrolment ${jti}`, 'POST', '/v1/revocations', { 'pilot-enrolment': jti, reason })
  }

  /** Revokes a certificate; an already revoked one is fine (200). */
  async revokeCertificate(serial: string, reason: string): Promise<void> {
    await this.#json(`revocation of certificate ${serial}`, 'DELETE', `/v1/certificates/${encodeURIComponent(serial)}`, { reason })
  }

  /**
   * One page of the broker's audit log (admin API, GET /v1/audit): the events of the records matching `query`
   * (`jti`, `sub`, `type`, `cursor`…) and the cursor of the next page, if any.
   */
  async auditPage(query: Record<string, string>): Promise<{ events: Array<Record<string, unknown>>; next?: string }> {
    const res = await this.#fetch(`${this.base}/v1/audit?${new URLSearchParams(query).toString()}`, { method: 'GET', headers: { authorization: `Bearer ${this.#bearer}` } })
    const body = await this.#read('audit query', res)
    const records = Array.isArray(body.records) ? body.records as Array<{ event?: unknown }> : []
    return {
      events: records.map((r) => (typeof r.event === 'object' && r.event !== null ? r.event as Record<string, unknown> : {})),
      ...(typeof body.next_cursor === 'string' ? { next: body.next_cursor } : {}),
    }
  }

  async #form(what: string, form: Record<string, string>): Promise<Record<string, unknown>> {
    const res = await this.#fetch(`${this.base}/token`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString(),
    })
    return this.#read(what, res)
  }

  async #json(what: string, method: string, path: string, body: unknown): Promise<Record<string, unknown>> {
    const res = await this.#fetch(`${this.base}${path}`, {
      method, headers: { 'content-type': 'application/json', authorization: `Bearer ${this.#bearer}` }, body: JSON.stringify(body),
    })
    return this.#read(what, res)
  }

  /** The answer's text; one past MAX_PROVISION_ANSWER_BYTES is a refusal naming the call. */
  async #text(what: string, res: { status: number; text(): Promise<string> }): Promise<string> {
    try {
      return await res.text()
    } catch (err) {
      if (err instanceof AnswerTooLarge) throw new BrokerCallError(what, res.status, 'invalid_response', err.message)
      // Named after the call, so the CLI prints it as one line (any other error it takes for a bug of ours).
      if (err instanceof AnswerCutShort) throw new Error(`${what}: ${err.message}`)
      throw err
    }
  }

  async #read(what: string, res: { status: number; text(): Promise<string> }): Promise<Record<string, unknown>> {
    const text = await this.#text(what, res)
    let parsed: unknown
    try { parsed = JSON.parse(text) } catch { /* not JSON: reported below */ }
    const body = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed as Record<string, unknown> : undefined
    if (res.status < 200 || res.status > 299) {
      const refusal = readOAuthError(body)
      throw new BrokerCallError(what, res.status, refusal?.error ?? 'error', refusal?.description)
    }
    if (!body) throw new BrokerCallError(what, res.status, 'invalid_response', 'the answer is not a JSON object; is --broker a condor-token-broker?')
    return body
  }
}
