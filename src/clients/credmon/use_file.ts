import { unverifiedJwtPayload } from '../../lib/jwt_payload.ts'

/**
 * The `.use` file a job receives. HTCondor's OAuth and local credmons write JSON with `access_token` and
 * `expires_in` (what HTCondor's own curl plugin reads); its Vault credmon writes the bare token and a
 * newline. Both forms exist in pools, so both are offered.
 */
/**
 * The most of a `.use` the credmon reads back (at a restart, for the life left): one token of at most 16 KiB
 * and its expires_in. A larger file is none the credmon wrote, and is taken as no `.use`.
 */
export const MAX_USE_BYTES = 64 * 1024

export const USE_FORMATS = ['json', 'bare'] as const
export type UseFormat = (typeof USE_FORMATS)[number]

export function formatUse(accessToken: string, expiresIn: number, format: UseFormat): string {
  return format === 'json' ? `${JSON.stringify({ access_token: accessToken, expires_in: expiresIn })}\n` : `${accessToken}\n`
}

/**
 * The life to act on for a token said to live `expiresIn` seconds: never more than the token's own whole
 * life, `exp - iat`, when it is a JWT that states both. Both come from its issuer's clock, so the bound
 * holds whatever the skew between that clock and ours; an honest answer (the remaining life of a token,
 * at most its whole life) is left as it is. An expires_in past it (milliseconds where seconds are meant,
 * a broken proxy) would put the next refresh long after the token died.
 */
export function tokenLife(accessToken: string, expiresIn: number): number {
  const whole = jwtWholeLife(accessToken)
  return whole !== undefined && whole < expiresIn ? whole : expiresIn
}

/**
 * When a `.use` written at `mtime` stops being valid: `mtime + expires_in` for the JSON form (bounded by
 * tokenLife, and by the JWT's `exp` when it states one), the JWT's `exp` for a bare token (bounded by its
 * whole life from `mtime`, since `exp` is on the issuer's clock). Undefined when neither can be read, so
 * the caller refreshes at once.
 */
export function useExpiry(text: string, mtime: number): number | undefined {
  const trimmed = text.trim()
  if (trimmed.startsWith('{')) {
    try {
      const j = JSON.parse(trimmed) as Record<string, unknown>
      if (typeof j.expires_in === 'number' && j.expires_in > 0) {
        if (typeof j.access_token !== 'string') return mtime + j.expires_in
        // Also never past the JWT's exp: an mtime made new by a copy (`cp -r` without -p) would otherwise
        // give a dead token a whole new life. exp is on the issuer's clock; the earlier of the two is kept.
        const exp = jwtExp(j.access_token)
        const stated = mtime + tokenLife(j.access_token, j.expires_in)
        return exp === undefined ? stated : Math.min(stated, exp)
      }
      if (typeof j.access_token === 'string') return jwtExpiry(j.access_token, mtime)
    } catch { /* fall through: unreadable means refresh */ }
    return undefined
  }
  return jwtExpiry(trimmed, mtime)
}

/**
 * A JWT's `exp` on our clock: `exp` is the issuer's clock, so it is bounded by `mtime + (exp - iat)`, the
 * token's whole life counted from when we wrote it (no later than it really ends, whatever the skew).
 */
function jwtExpiry(token: string, mtime: number): number | undefined {
  const exp = jwtExp(token)
  if (exp === undefined) return undefined
  const whole = jwtWholeLife(token)
  return whole === undefined ? exp : Math.min(exp, mtime + whole)
}

function claims(token: string): Record<string, unknown> | undefined {
  try {
    const p = unverifiedJwtPayload(token)
    return typeof p === 'object' && p !== null ? p as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

function jwtExp(token: string): number | undefined {
  const exp = claims(token)?.exp
  return typeof exp === 'number' ? exp : undefined
}

/** `exp - iat` of a JWT stating both as numbers with exp after iat; undefined otherwise. */
function jwtWholeLife(token: string): number | undefined {
  const c = claims(token)
  if (typeof c?.exp !== 'number' || typeof c.iat !== 'number' || !Number.isFinite(c.exp - c.iat) || c.exp <= c.iat) return undefined
  return Math.floor(c.exp - c.iat)
}
