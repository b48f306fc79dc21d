/** Wire constants of RFC 8693 token exchange, spelled as the specs spell them (docs/iam-and-wlcg.md §3.2). */
export const GRANT_TYPE_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'

export const TOKEN_TYPE = {
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  refreshToken: 'urn:ietf:params:oauth:token-type:refresh_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  /** The broker's own identifier for HTCondor IDTOKENs (RFC 8693 allows any absolute URI). */
  idtoken: 'urn:htcondor:token-type:idtoken',
} as const

/** Issued token types the broker can return at POST /token. */
export const ISSUED_TOKEN_TYPES = [TOKEN_TYPE.idtoken, TOKEN_TYPE.jwt, TOKEN_TYPE.accessToken] as const
