import { createCipheriv, createDecipheriv, hash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { OperatorError } from '../errors.ts'
import { readSecretFile, writeSecretFileAtomic } from '../lib/secure_file.ts'

/** A sealed refresh token as stored: never the token itself. */
export interface SealedSecret {
  /** AES-256-GCM ciphertext followed by its 16-byte tag, base64. */
  ciphertext: string
  /** The 12-byte GCM nonce, base64; fresh for every seal. */
  nonce: string
  /** Which key sealed it: the first 16 hex digits of SHA-256 over the key (not secret, names the key). */
  keyId: string
}

/** What a sealed secret is bound to: a ciphertext copied to another row, or a row whose scopes were edited, no longer opens. */
export interface SealBinding {
  user: string
  provider: string
  scopes: readonly string[]
  audience: readonly string[]
}

const TAG_BYTES = 16

/**
 * AES-256-GCM for refresh tokens at rest. The key lives outside the database (a file or an environment
 * variable), so a copy of the database alone reveals no refresh token. The associated data binds each
 * ciphertext to its user, provider, scopes and audience.
 */
export class CredentialCipher {
  readonly keyId: string
  readonly #key: Buffer

  constructor(key: Buffer) {
    if (key.length !== 32) throw new TypeError('a credential key is 32 bytes')
    this.#key = Buffer.from(key)
    this.keyId = hash('sha256', key, 'hex').slice(0, 16)
  }

  seal(plaintext: string, binding: SealBinding): SealedSecret {
    const nonce = randomBytes(12)
    const c = createCipheriv('aes-256-gcm', this.#key, nonce)
    c.setAAD(associatedData(binding, this.keyId))
    const body = Buffer.concat([c.update(plaintext, 'utf8'), c.final(), c.getAuthTag()])
    return { ciphertext: body.toString('base64'), nonce: nonce.toString('base64'), keyId: this.keyId }
  }

  /** Throws OperatorError ECREDKEY when the secret was sealed with another key or does not authenticate. */
  open(sealed: SealedSecret, binding: SealBinding): string {
    if (sealed.keyId !== this.keyId) {
      throw new OperatorError('ECREDKEY', `a stored credential was sealed with key ${sealed.keyId}, not the configured key ${this.keyId}`)
    }
    const body = Buffer.from(sealed.ciphertext, 'base64')
    if (body.length < TAG_BYTES) throw new OperatorError('ECREDKEY', 'a stored credential is truncated')
    try {
      const d = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(sealed.nonce, 'base64'))
      d.setAAD(associatedData(binding, sealed.keyId))
      d.setAuthTag(body.subarray(body.length - TAG_BYTES))
      return Buffer.concat([d.update(body.subarray(0, body.length - TAG_BYTES)), d.final()]).toString('utf8')
    } catch (err) {
      throw new OperatorError('ECREDKEY', 'a stored credential does not authenticate under the configured key (tampered or moved)', { cause: err })
    }
  }
}

function associatedData(b: SealBinding, keyId: string): Buffer {
  // JSON of a fixed-order array: unambiguous however the values are spelt.
  return Buffer.from(JSON.stringify(['ctb-credential-v1', keyId, b.user, b.provider, [...b.scopes], [...b.audience]]))
}

/** A key as written in a key file or an environment variable: 64 hex digits or base64 of 32 bytes. */
export function parseCredentialKey(text: string, where: string): Buffer {
  const t = text.trim()
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : /^[A-Za-z0-9+/_-]{43}=?$/.test(t) ? Buffer.from(t, 'base64') : undefined
  if (!key || key.length !== 32) throw new OperatorError('ECREDKEY', `${where}: a credential key is 32 bytes, written as 64 hex digits or base64`)
  return key
}

/**
 * The credential key: from the environment variable `envName` when set, else from `file` (mode 0600).
 * With `create`, a missing file is created with a fresh random key (development only).
 */
export function loadCredentialKey(source: { file: string; envName: string; create: boolean }, env: NodeJS.ProcessEnv): { key: Buffer; created?: string } {
  const fromEnv = env[source.envName]
  if (fromEnv !== undefined && fromEnv !== '') return { key: parseCredentialKey(fromEnv, source.envName) }
  let created: string | undefined
  if (!existsSync(source.file)) {
    if (!source.create) throw new OperatorError('ECREDKEY', `no credential key: set ${source.envName} or create ${source.file} (32 random bytes, base64)`)
    writeSecretFileAtomic(source.file, `${randomBytes(32).toString('base64')}\n`, { exclusive: true })
    created = source.file
  }
  const key = parseCredentialKey(readSecretFile(source.file).toString('utf8'), source.file)
  return { key, ...(created ? { created } : {}) }
}
