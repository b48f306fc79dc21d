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

export function sealBearer(id: string, bearer: string, binding: SessionBinding): string {
  const nonce = randomBytes(NONCE_BYTES)
  const cipher = createCipheriv('aes-256-gcm', derive(id, BEARER_INFO), nonce)
  cipher.setAAD(associatedData(binding))
  const body = Buffer.concat([cipher.update(bearer, 'utf8'), cipher.final()])
  return `${FORMAT}.${Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url')}`
}

/** The bearer, or undefined when the id is not the one it was sealed under or anything was changed. */
export function openBearer(id: string, sealed: string, binding: SessionBinding): string | undefined {
  const dot = sealed.indexOf('.')
  if (dot < 0 || sealed.slice(0, dot) !== FORMAT) return undefined
  const raw = Buffer.from(sealed.slice(dot + 1), 'base64url')
  if (raw.length < NONCE_BYTES + TAG_BYTES) return undefined
  try {
    const decipher = createDecipheriv('aes-256-gcm', derive(id, BEARER_INFO), raw.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES })
    decipher.setAAD(associatedData(binding))
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES))
    return Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8')
  } catch {
    return undefined
  }
}

/** The session's CSRF token: derived, never stored; knowing it does not reveal the id. */
export function sessionCsrf(id: string): string {
  return derive(id, CSRF_INFO).toString('base64url')
}
