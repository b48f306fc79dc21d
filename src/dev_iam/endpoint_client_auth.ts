import { createHash, timingSafeEqual } from 'node:crypto'
import type { DevIamClient } from './dev_iam_config.ts'
import type { DevIamContext } from './dev_iam_context.ts'

export type ClientAuthResult = { ok: true; client: DevIamClient } | { ok: false; usedBasic: boolean }

/** Constant-time secret comparison whatever the lengths (both sides are hashed first). */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())
}

/** RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64. */
function decodeBasic(header: string): { id: string; secret: string } | undefined {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header.trim())
  if (!m) return undefined
  const raw = Buffer.from(m[1]!, 'base64').toString('utf8')
  const i = raw.indexOf(':')
  if (i < 0) return undefined
  try {
    const dec = (s: string) => decodeURIComponent(s.replace(/\+/g, '%20'))
    return { id: dec(raw.slice(0, i)), secret: dec(raw.slice(i + 1)) }
  } catch {
    return undefined
  }
}

/**
 * Client authentication for the introspection and revocation endpoints (IAM requires it, §1.1), with
 * the method registered for the client enforced as IAM ≥ 1.14.1 does. oidc-provider authenticates the
 * token endpoint itself; these two endpoints are ours because it refuses to introspect JWT access tokens.
 */
export function authenticateClient(dev: DevIamContext, authorization: string | undefined, form: URLSearchParams): ClientAuthResult {
  const usedBasic = authorization !== undefined
  let creds: { id: string; secret: string; method: DevIamClient['token_endpoint_auth_method'] } | undefined
  if (authorization !== undefined) {
    const b = decodeBasic(authorization)
    if (b) creds = { ...b, method: 'client_secret_basic' }
  } else {
    const id = form.getAll('client_id')
    const secret = form.getAll('client_secret')
    if (id.length === 1 && secret.length === 1) creds = { id: id[0]!, secret: secret[0]!, method: 'client_secret_post' }
  }
  if (!creds) return { ok: false, usedBasic }
  const client = dev.clients.get(creds.id)
  const ok = client !== undefined && sameSecret(client.client_secret, creds.secret) && client.token_endpoint_auth_method === creds.method
  return ok && client ? { ok: true, client } : { ok: false, usedBasic }
}
