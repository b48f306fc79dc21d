import { z } from 'zod'
import { InvalidRequest, UnsupportedGrantType } from '../errors.ts'
import type { TokenKind } from '../policy/decision.ts'
import { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE } from './token_exchange.ts'

/** The form fields of a token request as sent; a repeated name becomes an array (which the parser refuses where RFC 6749 §3.2 does). */
export type TokenRequestForm = Record<string, string | string[]>

/** A validated RFC 8693 token-exchange request, with the broker's extension parameters. */
export interface TokenExchangeRequest {
  subjectToken: string
  /** Absent: the role's default kind. */
  tokenKind?: TokenKind
  role: string
  /** `audience` and `resource` values together (RFC 8693 §2.1 treats both as targets). */
  audience: string[]
  scopes?: string[]
  host?: string
  lifetime?: number
  /** Extension parameters passed to identity templates (e.g. site, slurm_job_id). */
  params: Record<string, string>
}

/** What the broker mints → its token type URI, in `issued_token_type` and `requested_token_type` (docs/iam-and-wlcg.md §3.2). */
export const ISSUED_TYPE_OF: Record<TokenKind, string> = {
  idtoken: TOKEN_TYPE.idtoken,
  scitoken: TOKEN_TYPE.jwt,
  access_token: TOKEN_TYPE.accessToken,
}

/**
 * `requested_token_type` URI → what the broker mints: the same table read backwards. A Map, because the
 * key is the caller's text: an object would answer `constructor` or `toString` with what every object has.
 */
const KIND_OF: ReadonlyMap<string, TokenKind> = new Map(Object.entries(ISSUED_TYPE_OF).map(([kind, uri]) => [uri, kind as TokenKind]))

const REPEATABLE = new Set(['audience', 'resource'])
const KNOWN = new Set([
  'grant_type', 'subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope',
  'actor_token', 'actor_token_type', 'role', 'host', 'lifetime', 'site', 'slurm_job_id', 'client_id',
])
/** Extension parameters that identity templates may use; values must be plain names. */
const TEMPLATE_PARAMS = ['site', 'slurm_job_id'] as const
const PLAIN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
/** An IAM access token is a few KiB; anything far larger is refused before any parsing or crypto. */
export const MAX_SUBJECT_TOKEN_BYTES = 16 * 1024

const PlainName = z.string().regex(PLAIN)
/**
 * The shape of each form field of an exchange, one zod schema per field. The parser below checks every
 * value with these very objects (and adds what a field schema cannot say: RFC order of errors, repetition,
 * messages naming the parameter), and the OpenAPI document shows them, so the two cannot drift.
 */
export const EXCHANGE_FIELDS = {
  grant_type: z.literal(GRANT_TYPE_TOKEN_EXCHANGE),
  subject_token: z.string().min(1).max(MAX_SUBJECT_TOKEN_BYTES).describe('The IAM access token (a JWT).'),
  subject_token_type: z.enum([TOKEN_TYPE.accessToken, TOKEN_TYPE.jwt]),
  requested_token_type: z.enum([ISSUED_TYPE_OF.idtoken, ISSUED_TYPE_OF.scitoken, ISSUED_TYPE_OF.access_token])
    .describe("Absent: the role's default kind."),
  role: PlainName.describe('The HTCondor role asked for, e.g. schedd, startd, pilot, submit-user.'),
  /** RFC 8693 §2.1 target; may be repeated. */
  audience: z.string().max(512).regex(/^[\x21-\x7e]+$/),
  /** RFC 8707 §2: an absolute URI without a fragment; may be repeated. */
  resource: z.string().max(512).regex(/^[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x22\x24-\x7e]*$/),
  scope: z.string().max(2048).regex(/^[\x20-\x7e]*$/).describe('Space-separated scopes.'),
  host: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/).describe('The daemon host an IDTOKEN is for.'),
  /** Whole seconds, 1 to 999999999. */
  lifetime: z.string().regex(/^(?=\d{1,9}$)0*[1-9]\d*$/).describe('Requested lifetime in whole seconds; capped by policy.'),
  site: PlainName.describe('Site label for identity templates.'),
  slurm_job_id: PlainName.describe('SLURM job id for identity templates.'),
  client_id: z.string().describe('Accepted and ignored: the caller is its subject token.'),
} as const

const valid = (schema: z.ZodType, value: string): boolean => schema.safeParse(value).success

/**
 * Validates the form parameters of POST /token. Each failure names the parameter and never echoes
 * a token value.
 * @see https://www.rfc-editor.org/rfc/rfc8693.html#section-2.1
 */
export function parseTokenExchangeRequest(form: TokenRequestForm): TokenExchangeRequest {
  const one = (name: string): string | undefined => {
    const v = form[name]
    if (Array.isArray(v)) {
      // RFC 6749 §3.2: request parameters MUST NOT be included more than once (audience/resource excepted).
      throw new InvalidRequest(`${name} must not be repeated`)
    }
    return v === undefined || v === '' ? undefined : v
  }
  const many = (name: string): string[] => {
    const v = form[name]
    return (v === undefined ? [] : Array.isArray(v) ? v : [v]).filter((s) => s !== '')
  }
  for (const k of Object.keys(form)) {
    if (Array.isArray(form[k]) && !REPEATABLE.has(k) && KNOWN.has(k)) one(k)
  }

  const grantType = one('grant_type')
  if (!grantType) throw new InvalidRequest('grant_type is required')
  if (grantType !== GRANT_TYPE_TOKEN_EXCHANGE) throw new UnsupportedGrantType(`grant_type must be ${GRANT_TYPE_TOKEN_EXCHANGE}`)
  if (one('actor_token') !== undefined || one('actor_token_type') !== undefined) throw new InvalidRequest('delegation not supported: actor_token is not accepted')

  const subjectToken = one('subject_token')
  if (!subjectToken) throw new InvalidRequest('subject_token is required')
  if (!valid(EXCHANGE_FIELDS.subject_token, subjectToken)) throw new InvalidRequest(`subject_token is larger than ${MAX_SUBJECT_TOKEN_BYTES} bytes`)
  const subjectTokenType = one('subject_token_type')
  if (!subjectTokenType) throw new InvalidRequest('subject_token_type is required')
  if (!valid(EXCHANGE_FIELDS.subject_token_type, subjectTokenType)) {
    throw new InvalidRequest(`subject_token_type must be ${TOKEN_TYPE.accessToken}`)
  }

  const requested = one('requested_token_type')
  let tokenKind: TokenKind | undefined
  if (requested !== undefined) {
    tokenKind = KIND_OF.get(requested)
    if (!tokenKind) throw new InvalidRequest(`requested_token_type is not supported; use one of ${[...KIND_OF.keys()].join(', ')}`)
  }

  const role = one('role')
  if (!role) throw new InvalidRequest('role is required (e.g. schedd, startd, pilot, job)')
  if (!valid(EXCHANGE_FIELDS.role, role)) throw new InvalidRequest('role must be a plain name')

  const audience = [...many('audience'), ...many('resource')]
  for (const a of audience) {
    if (!valid(EXCHANGE_FIELDS.audience, a)) throw new InvalidRequest('audience/resource values must be URIs of printable ASCII without spaces')
  }
  for (const r of many('resource')) {
    // RFC 8707 §2: resource is an absolute URI without a fragment.
    if (!valid(EXCHANGE_FIELDS.resource, r)) throw new InvalidRequest('resource must be an absolute URI without a fragment')
  }

  const scopeParam = one('scope')
  const scopes = scopeParam?.split(' ').filter(Boolean)
  if (scopeParam !== undefined && scopeParam.length > 2048) throw new InvalidRequest('scope is longer than 2048 characters')
  if (scopeParam !== undefined && !valid(EXCHANGE_FIELDS.scope, scopeParam)) throw new InvalidRequest('scope must be printable ASCII')

  const host = one('host')
  if (host !== undefined && !valid(EXCHANGE_FIELDS.host, host)) throw new InvalidRequest('host must be a DNS host name')

  const lifetimeParam = one('lifetime')
  let lifetime: number | undefined
  if (lifetimeParam !== undefined) {
    if (!valid(EXCHANGE_FIELDS.lifetime, lifetimeParam)) throw new InvalidRequest('lifetime must be a positive whole number of seconds')
    lifetime = Number(lifetimeParam)
  }

  const params: Record<string, string> = {}
  for (const p of TEMPLATE_PARAMS) {
    const v = one(p)
    if (v === undefined) continue
    if (!valid(EXCHANGE_FIELDS[p], v)) throw new InvalidRequest(`${p} must be a plain name (letters, digits, '.', '_', '-')`)
    params[p] = v
  }

  return {
    subjectToken,
    ...(tokenKind ? { tokenKind } : {}),
    role,
    audience,
    ...(scopes ? { scopes } : {}),
    ...(host ? { host } : {}),
    ...(lifetime ? { lifetime } : {}),
    params,
  }
}

/**
 * The subject token of a form that may be invalid in other ways, or undefined when there is none worth
 * verifying: used to learn who sent a request before refusing it, so the refusal can be recorded with the
 * caller. A repeated subject_token names no single caller and yields undefined (the request is refused
 * anyway, and only counted); one above
 * MAX_SUBJECT_TOKEN_BYTES is not looked at.
 */
export function subjectTokenOf(form: TokenRequestForm): string | undefined {
  const v = form.subject_token
  // Repeated, it names no single caller: picking one would let a request speak for whichever came first.
  if (Array.isArray(v)) return undefined
  return v !== undefined && v !== '' && v.length <= MAX_SUBJECT_TOKEN_BYTES ? v : undefined
}
