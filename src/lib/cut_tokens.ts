/**
 * A run of token characters this long with upper case, lower case and a digit in it: a token, not a word,
 * a scope, a path segment, a host name or a UUID.
 */
const TOKEN_LIKE = /[A-Za-z0-9._~+/=-]{24,}/g
const looksLikeToken = (run: string) => /[A-Z]/.test(run) && /[a-z]/.test(run) && /[0-9]/.test(run)

/**
 * Another system's text with anything token-shaped replaced by `[token]`, for text that is relayed,
 * recorded or logged. IAM's token endpoint (MITREid Connect on Spring Security OAuth) names the token it
 * refuses in its description ("Invalid refresh token: <token>", "Invalid token: <token>").
 */
export function cutTokens(text: string): string {
  return text.replace(TOKEN_LIKE, (run) => (looksLikeToken(run) ? '[token]' : run))
}
