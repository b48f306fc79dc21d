import { unverifiedJwtPayload } from '../../lib/jwt_payload.ts'

/**
 * The `.use` file a job receives. HTCondor's OAuth and local credmons write JSON with `access_token` and
 * `expires_in` (what HTCondor's own curl plugin reads); its Vault credmon writes the bare token and a
 * newline. Both forms exist in pools, so both are offered.
 */
export const USE_FORMATS = ['json', 'bare'] as const
export type UseFormat = (typeof USE_FORMATS)[number]

export function formatUse(accessToken: string, expiresIn: number, format: UseFormat): string {
  return format === 'json' ? `${JSON.stringify({ access_token: accessToken, expires_in: expiresIn })}\n` : `${accessToken}\n`
}

/**
 * When a `.use` written at `mtime` stops being valid: `mtime + expires_in` for the JSON form, the JWT's
 * `exp` for a bare token. Undefined when neither can be read, so the caller refreshes at once.
 */
export function useExpiry(text: string, mtime: number): number | undefined {
  const trimmed = text.trim()
  if (trimmed.startsWith('{')) {
    try {
      const j = JSON.parse(trimmed) as Record<string, unknown>
      if (typeof j.expires_in === 'number' && j.expires_in > 0) return mtime + j.expires_in
      if (typeof j.access_token === 'string') return jwtExp(j.access_token)
    } catch { /* fall through: unreadable means refresh */ }
    return undefined
  }
  return jwtExp(trimmed)
}

function jwtExp(token: string): number | undefined {
  try {
    const exp = (unverifiedJwtPayload(token) as Record<string, unknown>).exp
    return typeof exp === 'number' ? exp : undefined
  } catch {
    return undefined
  }
}
