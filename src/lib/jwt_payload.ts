/**
 * The payload of a compact JWS, decoded without verifying it: for clients that only read what the broker
 * or IAM just handed them (the broker verifies). Throws when the middle segment is not base64url JSON.
 */
export function unverifiedJwtPayload(token: string): unknown {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'))
}

/**
 * The `exp` of a JWT access token (IAM's are), read without verifying it: only its life is read, from a
 * token IAM just handed over an authenticated call. Undefined when it is not a JWT or has no numeric exp.
 */
export function unverifiedJwtExp(token: string): number | undefined {
  try {
    const payload = unverifiedJwtPayload(token) as { exp?: unknown } | null
    const exp = payload?.exp
    return typeof exp === 'number' && Number.isFinite(exp) ? Math.floor(exp) : undefined
  } catch {
    return undefined
  }
}
