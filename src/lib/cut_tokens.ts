/**
 * A run of token characters this long with upper case, lower case and a digit in it: a token, not a word,
 * a scope, a path segment, a host name or a UUID.
 */
const TOKEN_LIKE = /[A-Za-z0-9._~+/=-]{24,}/g
const looksLikeToken = (run: string) => (/[A-Z]/.test(run) && /[a-z]/.test(run) && /[0-9]/.test(run)) || holdsLongHex(run)
/**
 * Hex of 20 bytes or more with a digit and a letter: `openssl rand -hex 32`, the usual hand-made bearer token
 * (metrics, bootstrap), has no upper case. 16 bytes (a pool CA serial, 32 characters) stays readable. Looked
 * for inside the run, not as all of it: `=`, `.` and `-` are token characters, so `token=<hex>` is one run.
 */
const holdsLongHex = (run: string) => (run.match(/[0-9a-fA-F]{40,}/g) ?? []).some((h) => /[0-9]/.test(h) && /[a-fA-F]/.test(h))
/**
 * What a run starting with `/` right after it is a scope's path: WLCG storage scopes (`storage.read:/p`)
 * and SciTokens ones (`read:/p`). Paths of data sets mix case and digits (CMS's `/store/data/Run2022D/…`),
 * and which path was refused is what an operator needs to read; no token is written after a scope name.
 */
const SCOPE_BEFORE_PATH = /(?:^|[^A-Za-z0-9._~+/=-])(?:storage\.(?:read|create|modify|stage)|read|write):$/

/**
 * Another system's text with anything token-shaped replaced by `[token]`, for text that is relayed,
 * recorded or logged. IAM's token endpoint (MITREid Connect on Spring Security OAuth) names the token it
 * refuses in its description ("Invalid refresh token: <token>", "Invalid token: <token>").
 */
export function cutTokens(text: string): string {
  return text.replace(TOKEN_LIKE, (run: string, offset: number) => {
    if (!looksLikeToken(run)) return run
    if (run.startsWith('/') && SCOPE_BEFORE_PATH.test(text.slice(Math.max(0, offset - 20), offset))) return run
    return '[token]'
  })
}
