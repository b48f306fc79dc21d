import type { AuditLog } from '../audit/audit_log.ts'
import { AccessDenied, OperatorError, TemporarilyUnavailable } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import type { RefreshTokenStore, StoredRefreshToken } from '../iam/refresh_token_store.ts'
import type { VerifiedSubject } from '../iam/subject.ts'
import type { Clock } from '../lib/clock.ts'
import type { CredentialCipher } from './credential_cipher.ts'
import type { CredentialStore, StoredCredential } from './credential_store.ts'
import { recheckScopes } from './iam_recheck_grant.ts'

/** How long a refused refresh token's row is watched for a concurrent rotation before it is revoked. */
const ROTATION_GRACE_STEPS = 5
const ROTATION_GRACE_STEP_MS = 100

/** The refresh-token store key of one credential. Names cannot hold a newline, so the key is unambiguous. */
export function credentialKey(user: string, provider: string): string {
  return `${user}\n${provider}`
}

function parseKey(key: string): { user: string; provider: string } {
  const cut = key.indexOf('\n')
  if (cut < 0) throw new TypeError('not a credential key')
  return { user: key.slice(0, cut), provider: key.slice(cut + 1) }
}

/**
 * The IAM exchanger's RefreshTokenStore over the credential table: `get` opens the sealed token, `put`
 * stores a rotated one (compare-and-swap on the previous nonce, audited as credential.rotated) and `delete`
 * (IAM refused the token: expired or revoked there) revokes the credential, audited as credential.revoked.
 * A registration is written by the credential service itself, never through `put`: a `put` for a
 * credential that is missing or revoked is refused, so a refresh racing a revocation cannot revive it.
 */
export class SealedRefreshTokens implements RefreshTokenStore {
  readonly #store: CredentialStore & AuditLog
  readonly #cipher: CredentialCipher
  readonly #clock: Clock
  readonly #log: Logger
  /** The nonce each key's token was read with: the compare-and-swap value of the next rotation. */
  readonly #readNonce = new Map<string, string>()

  constructor(deps: { store: CredentialStore & AuditLog; cipher: CredentialCipher; clock: Clock; log: Logger }) {
    this.#store = deps.store
    this.#cipher = deps.cipher
    this.#clock = deps.clock
    this.#log = deps.log
  }

  /**
   * A credential the configured key cannot open is the operator's to fix (wrong or lost key), not the
   * user's: 503, so credmons keep what they have and retry, instead of 403, which would end the credential.
   */
  #open(c: StoredCredential): string {
    try {
      return this.#cipher.open(c.sealed!, c)
    } catch (err) {
      if (!(err instanceof OperatorError)) throw err
      this.#log.error('cannot open a stored credential with the configured credential key', { user: c.user, provider: c.provider, keyId: c.sealed!.keyId, configuredKeyId: this.#cipher.keyId, reason: err.message })
      throw new TemporarilyUnavailable('the broker cannot open this stored credential (credential key mismatch); the operator must restore the key', { cause: err, retryAfter: 300 })
    }
  }

  async get(key: string): Promise<StoredRefreshToken | undefined> {
    const { user, provider } = parseKey(key)
    const c = await this.#store.readCredential(user, provider)
    if (!c || c.revoked || !c.sealed || c.clientId === undefined) return undefined
    const refreshToken = this.#open(c)
    this.#readNonce.set(key, c.sealed.nonce)
    // kind scitoken: the row's scopes are the SciToken's; IAM granted the recheck scopes (groups).
    const grant = c.kind === 'iam' ? { scopes: c.scopes, audience: c.audience } : { scopes: recheckScopes(JSON.parse(c.subjectJson) as VerifiedSubject), audience: [] }
    return { refreshToken, issuer: c.iss, subject: c.sub, clientId: c.clientId, ...grant, obtainedAt: c.rotatedAt ?? c.createdAt }
  }

  async put(key: string, record: StoredRefreshToken): Promise<void> {
    const { user, provider } = parseKey(key)
    const previousNonce = this.#readNonce.get(key)
    const c = await this.#store.readCredential(user, provider)
    if (!c || c.revoked || previousNonce === undefined) throw new AccessDenied('the credential was revoked or replaced while its refresh token rotated')
    const sealed = this.#cipher.seal(record.refreshToken, c)
    const now = this.#clock.now()
    const ok = await this.#store.writeCredential(
      { action: 'rotate', user, provider, previousNonce, sealed, rotatedAt: now },
      { type: 'credential.rotated', time: now, caller: { iss: c.iss, sub: c.sub }, decision: 'allow', reason: 'IAM returned a new refresh token', detail: { user, provider, keyId: sealed.keyId } },
    )
    if (!ok) throw new AccessDenied('the credential was revoked or replaced while its refresh token rotated')
    this.#readNonce.set(key, sealed.nonce)
  }

  async delete(key: string, ifRefreshToken?: string): Promise<boolean> {
    const { user, provider } = parseKey(key)
    let c = await this.#store.readCredential(user, provider)
    // Only the token IAM refused: a newer one stored meanwhile (another replica rotated) stays. That replica
    // may have spent the token at IAM an instant ago without having committed the rotation yet: the row is
    // watched a moment before IAM's refusal is taken as final.
    for (let step = 0; ; step++) {
      if (!c || c.revoked || !c.sealed) return true
      if (ifRefreshToken !== undefined && this.#open(c) !== ifRefreshToken) return false
      if (ifRefreshToken === undefined || step === ROTATION_GRACE_STEPS) break
      await new Promise((resolve) => setTimeout(resolve, ROTATION_GRACE_STEP_MS))
      c = await this.#store.readCredential(user, provider)
    }
    await revokeStored(this.#store, c, { by: 'iam', reason: 'IAM refused the stored refresh token (expired or revoked at IAM)', now: this.#clock.now() })
    return true
  }

}

/** Revokes a stored credential with its audit record; false when it was already revoked or is unknown. */
export function revokeStored(store: CredentialStore, c: Pick<StoredCredential, 'user' | 'provider'>, o: { by: string; reason?: string; now: number; requestId?: string }): Promise<boolean> {
  return store.writeCredential(
    { action: 'revoke', user: c.user, provider: c.provider, revokedAt: o.now, revokedBy: o.by },
    {
      type: 'credential.revoked', time: o.now, caller: { sub: o.by }, decision: 'allow',
      ...(o.requestId ? { requestId: o.requestId } : {}),
      ...(o.reason ? { reason: o.reason } : {}),
      detail: { user: c.user, provider: c.provider },
    },
  )
}
