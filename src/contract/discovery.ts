import { GRANT_TYPE_TOKEN_EXCHANGE, ISSUED_TOKEN_TYPES } from './token_exchange.ts'

/**
 * The broker's OpenID/OAuth metadata. scitokens-cpp reads `issuer` and `jwks_uri` from
 * `<iss>/.well-known/openid-configuration` (docs/htcondor-tokens.md §5.3).
 * @see https://www.rfc-editor.org/rfc/rfc8414.html#section-2
 */
export interface BrokerMetadata {
  issuer: string
  jwks_uri: string
  token_endpoint: string
  grant_types_supported: string[]
  token_endpoint_auth_methods_supported: string[]
  response_types_supported: string[]
  id_token_signing_alg_values_supported: string[]
  /** Not standard; lists what `requested_token_type` may ask for. */
  issued_token_types_supported: string[]
}

export function brokerMetadata(issuer: string, signingAlgs: string[]): BrokerMetadata {
  // The issuer is compared byte for byte; endpoints are built from it without a doubled slash.
  const base = issuer.replace(/\/$/, '')
  return {
    issuer,
    jwks_uri: `${base}/jwks`,
    token_endpoint: `${base}/token`,
    grant_types_supported: [GRANT_TYPE_TOKEN_EXCHANGE],
    // The caller is authenticated by its IAM subject token (RFC 8693 §2.1), not by client credentials.
    token_endpoint_auth_methods_supported: ['none'],
    response_types_supported: ['token'],
    id_token_signing_alg_values_supported: signingAlgs,
    issued_token_types_supported: [...ISSUED_TOKEN_TYPES],
  }
}
