import { InvalidToken, MalformedBearer } from '../errors.ts'

/**
 * The bearer token of an Authorization header (RFC 6750 §2.1: "Bearer" 1*SP b64token), the one reading of
 * it every route that takes a bearer token shares, so that the same header is refused alike everywhere:
 * - no header, an empty one, or another scheme (Basic, Digest, …): no credentials the route can use, a 401
 *   whose challenge names no error (RFC 6750 §3.1);
 * - the Bearer scheme without exactly one token: a malformed request, 400 invalid_request (RFC 6750 §3.1);
 * - a token longer than `maxLength`: a token that cannot be valid here, 401 invalid_token.
 * The scheme is matched without regard to case (RFC 9110 §11.1). A token is any run of visible ASCII, wider
 * than b64token: what is not a valid token is then refused as invalid_token by the check that follows.
 */
export function bearerToken(header: string | undefined, maxLength = 8192): string {
  const value = (header ?? '').trim()
  // The scheme ends at any whitespace, not only at SP: "Bearer<TAB>token" is the Bearer scheme written
  // wrongly (malformed, 400), not another scheme that the route would answer as "no credentials".
  const end = value.search(/\s/)
  const scheme = end < 0 ? value : value.slice(0, end)
  if (scheme.toLowerCase() !== 'bearer') {
    throw new InvalidToken('a bearer token is required (Authorization: Bearer)', { presented: false })
  }
  // Only SP may separate scheme and token (RFC 6750 §2.1): other whitespace leaves a token that fails below.
  const token = end < 0 ? '' : value.slice(end).replace(/^ +/, '')
  if (!/^[\x21-\x7e]+$/.test(token)) throw new MalformedBearer('the Authorization header must be Bearer followed by exactly one token')
  if (token.length > maxLength) throw new InvalidToken('the bearer token is too long to be valid here', { presented: true })
  return token
}
