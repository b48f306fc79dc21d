import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto'

/**
 * The secrets of a console session, sealed under its own id. The id (256 random bits) lives only in the
 * browser's `__Host-` cookie; the store keeps its SHA-256. The bearer (an IAM access token or the bootstrap
 * admin token) is encrypted with AES-256-GCM under a key HKDF-SHA256 derives from the id, so the server
 * can open it only while the browser presents the cookie: a copy of the database hands out no admin
 * credential, and the digest in the row does not give the key (it is one-way). The CSRF token is derived
 * from the id the same way (another HKDF label), so nothing about it is stored at all.
 */

const FORMAT = 'v1'
const BEARER_INFO = 'condor-token-broker console session bearer v1'
const CSRF_INFO = 'condor-token-broker console session csrf v1'
const NONCE_BYTES = 12
const TAG_BYTES = 16

/** The clear columns the sealed bearer is bound to: a row edited in any of them no longer opens. */
export interface SessionBinding { idSha256: string; principal: string; expiresAt: number }

/** A fresh session id: 256 random bits, base64url (43 characters). */
export function newSessionId(): string {
  return randomBytes(32).toString('base64url')
}

/** Whether `id` has the shape of a session id (checked before any hashing or lookup). */
export function isSessionId(id: string | undefined): id is string {
  return id !== undefined && /^[A-Za-z0-9_-]{43}$/.test(id)
}

/** What the store keeps instead of the id. */
export function sessionDigest(id: string): string {
  return createHash('sha256').update(id).digest('base64url')
}

function derive(id: string, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(id, 'base64url'), Buffer.alloc(0), info, 32))
}

function associatedData(b: SessionBinding): Buffer {
  return Buffer.from(JSON.stringify([b.idSha256, b.principal, b.expiresAt]))
}

/**
 * What a session keeps sealed: the bearer, and for an IAM sign-in the ID token IAM issued with it (sent
 * back to IAM as id_token_hint at sign-out, OpenID Connect RP-Initiated Logout 1.0 §2). The ID token names
 * the admin, so it is kept as the bearer is.
 */
export interface SessionSecrets { bearer: string; idToken?: string }

/**
 * `v1` seals the bearer alone (what earlier brokers wrote, still opened); `v2` seals the secrets as JSON.
 * Same key and nonce size; v2's associated data also names the format (aadOf).
 */
const FORMAT_SECRETS = 'v2'

/**
 * The associated data of a seal: the binding, and for v2 the format too, so a v2 body relabelled v1 (or
 * the reverse) does not open. v1 bound the binding alone, as earlier brokers sealed it.
 */
function aadOf(format: string, binding: SessionBinding): Buffer {
  return format === FORMAT ? associatedData(binding) : Buffer.concat([Buffer.from(`${format}.`), associatedData(binding)])
}

function seal(id: string, format: string, plain: string, binding: SessionBinding): string {
  const nonce = randomBytes(NONCE_BYTES)
  const cipher = createCipheriv('aes-256-gcm', derive(id, BEARER_INFO), nonce)
  cipher.setAAD(aadOf(format, binding))
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()])
  return `${format}.${Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url')}`
}

function open(id: string, format: string, sealedBody: string, binding: SessionBinding): string | undefined {
  const raw = Buffer.from(sealedBody, 'base64url')
  if (raw.length < NONCE_BYTES + TAG_BYTES) return undefined
  try {
    const decipher = createDecipheriv('aes-256-gcm', derive(id, BEARER_INFO), raw.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES })
    decipher.setAAD(aadOf(format, binding))
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES))
    return Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8')
  } catch {
    return undefined
  }
}

/** The v1 form: the bearer alone (what earlier brokers wrote; still opened). */
export function sealBearer(id: string, bearer: string, binding: SessionBinding): string {
  return seal(id, FORMAT, bearer, binding)
}

/** Seals a session's secrets (v2). */
export function sealSecrets(id: string, secrets: SessionSecrets, binding: SessionBinding): string {
  return seal(id, FORMAT_SECRETS, JSON.stringify(secrets.idToken !== undefined ? [secrets.bearer, secrets.idToken] : [secrets.bearer]), binding)
}

/** The secrets of a v1 or v2 seal, or undefined when the id is not the one it was sealed under or anything was changed. */
export function openSecrets(id: string, sealed: string, binding: SessionBinding): SessionSecrets | undefined {
  const dot = sealed.indexOf('.')
  if (dot < 0) return undefined
  const format = sealed.slice(0, dot)
  if (format !== FORMAT && format !== FORMAT_SECRETS) return undefined
  const plain = open(id, format, sealed.slice(dot + 1), binding)
  if (plain === undefined) return undefined
  if (format === FORMAT) return { bearer: plain }
  let parts: unknown
  try { parts = JSON.parse(plain) } catch { return undefined }
  if (!Array.isArray(parts) || parts.length < 1 || parts.length > 2 || !parts.every((p) => typeof p === 'string')) return undefined
  return { bearer: parts[0] as string, ...(parts[1] !== undefined ? { idToken: parts[1] as string } : {}) }
}

/** The bearer, or undefined when the id is not the one it was sealed under or anything was changed. */
export function openBearer(id: string, sealed: string, binding: SessionBinding): string | undefined {
  return openSecrets(id, sealed, binding)?.bearer
}

/** The session's CSRF token: derived, never stored; knowing it does not reveal the id. */
export function sessionCsrf(id: string): string {
  return derive(id, CSRF_INFO).toString('base64url')
}
