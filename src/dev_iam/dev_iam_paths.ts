/**
 * Where the development IAM answers, without loading it: the broker names these even when the development
 * IAM runs elsewhere, and the provider (npm oidc-provider, ~40 MB resident) is loaded only to start one.
 */

/** IAM's paths, relative to the issuer (docs/iam-and-wlcg.md §1.1). */
export const DEV_IAM_PATHS = {
  discovery: '.well-known/openid-configuration',
  jwks: 'jwk',
  token: 'token',
  introspection: 'introspect',
  revocation: 'revoke',
  authorization: 'authorize',
} as const

/**
 * The development IAM's issuer on `port`. IAM's discovery always shows the issuer with a trailing slash
 * (§1.2); tokens carry the same string.
 */
export function devIamIssuer(port: number, host = '127.0.0.1', tls = false): string {
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}/`
}
