import { CALLER_REALM } from '../oauth_error_response.ts'
import type { HeaderSpec } from './route_spec.ts'

/**
 * Response headers as the OpenAPI document states them (OpenAPI 3.1 §4.8.21). What the broker sends is
 * decided in oauth_error_response.ts (errors) and in the routes (successes); these say it in the document.
 */

/** RFC 9110 §10.2.3, delay-seconds: on every 429 slow_down and 503 temporarily_unavailable. */
export const RETRY_AFTER: HeaderSpec = {
  description: 'Whole seconds to wait before asking again (RFC 9110 §10.2.3).',
  schema: { type: 'integer', minimum: 0 },
}

/** RFC 6750 §3: the bearer challenge, in the realm (or one of the realms) of the token the route takes. */
export function wwwAuthenticate(realms: readonly string[]): HeaderSpec {
  const named = realms.map((r) => `realm="${r}"`).join(' or ')
  const alternatives = realmAlternatives(realms)
  return {
    description: `The bearer challenge (RFC 6750 §3): Bearer ${named}, with error="invalid_token" and error_description when a bearer token was presented.`,
    schema: { type: 'string', pattern: `^Bearer realm="(${alternatives})"(, |$)` },
  }
}

/** The challenge of a malformed bearer's 400: the route's realm and error="invalid_request". */
export function malformedBearerChallenge(realms: readonly string[]): HeaderSpec {
  const alternatives = realmAlternatives(realms)
  return {
    description: 'Sent only for a malformed Authorization header: Bearer, the realm of the token the route takes, error="invalid_request" and error_description (RFC 6750 §3.1).',
    schema: { type: 'string', pattern: `^Bearer realm="(${alternatives})", error="invalid_request"` },
  }
}

/** The realms as alternatives of a regular expression. */
function realmAlternatives(realms: readonly string[]): string {
  return realms.map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')
}

/** RFC 9110 §10.2.1: the methods the target does answer. */
export const allowHeader = (methods: readonly string[]): HeaderSpec => ({
  description: 'The methods this path answers (RFC 9110 §10.2.1).',
  schema: { type: 'string', const: methods.join(', ') },
})

/** RFC 6749 §5.1: never cached. */
export const CACHE_CONTROL_NO_STORE: HeaderSpec = { description: 'Never cached (RFC 6749 §5.1).', schema: { type: 'string', const: 'no-store' } }
/** RFC 6749 §5.1, for HTTP/1.0 caches. */
export const PRAGMA_NO_CACHE: HeaderSpec = { description: 'Never cached, for HTTP/1.0 caches (RFC 6749 §5.1).', schema: { type: 'string', const: 'no-cache' } }

/** What every token response carries, success or error (oauth_error_response.ts NO_STORE_HEADERS). */
export const NO_STORE_HEADERS: Record<string, HeaderSpec> = { 'Cache-Control': CACHE_CONTROL_NO_STORE, Pragma: PRAGMA_NO_CACHE }

/** Where a 303 sends the browser. */
export const LOCATION: HeaderSpec = { description: 'Where to go next (RFC 9110 §10.2.2).', schema: { type: 'string' } }

/**
 * The headers oauthErrorReply adds to an OAuth error of this status: never cached, and the challenge of a
 * 401, the Retry-After of a 429 or 503. `allow`: the methods of a 405; `realms`: those a 401 may name.
 */
export function oauthErrorHeaders(status: number, allow?: readonly string[], realms: readonly string[] = [CALLER_REALM]): Record<string, HeaderSpec> {
  return {
    ...NO_STORE_HEADERS,
    ...(status === 401 ? { 'WWW-Authenticate': wwwAuthenticate(realms) } : {}),
    ...(status === 405 && allow ? { Allow: allowHeader(allow) } : {}),
    ...(status === 429 || status === 503 ? { 'Retry-After': RETRY_AFTER } : {}),
  }
}
