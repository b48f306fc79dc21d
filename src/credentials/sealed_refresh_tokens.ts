import type { AuditLog } from '../audit/audit_log.ts'
import { AccessDenied, CredentialGone, OperatorError, TemporarilyUnavailable } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import { SerialByKey } from '../lib/keyed_promises.ts'
import { withinMs } from '../lib/within_ms.ts'
import type { RefreshTokenStore, StoredRefreshToken } from '../iam/refresh_token_store.ts'
import type { VerifiedSubject } from '../iam/subject.ts'
import type { Clock } from '../lib/clock.ts'
import type { CredentialCipher, SealBinding, SealedSecret } from './credential_cipher.ts'
import type { CredentialStore, StoredCredential } from './credential_store.ts'
import type { HeldTokenSpill } from './held_token_spill.ts'
import type { RefreshTokenRevoker } from './revoke_at_iam.ts'
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
 * A first write still pending after this long also goes to disk: IAM has retired the old token, and a write
 * that neither lands nor fails (a database hung in a failover) must not leave the live one in memory only.
 */
const SPILL_PENDING_WRITE_AFTER_MS = 1000

/**
 * How long close() waits for the last writes of held tokens. A store that neither answers nor fails (a
 * database hung in a failover) must not hold up a shutdown that SIGTERM expects to end: after this, what
 * is still unstored is kept on disk for the next start, and close() returns.
 */
export const CLOSE_WRITE_GRACE_MS = 5_000

/** Back-off of the writes of a rotated refresh token the store refused: doubling from the first, capped. */
const ROTATION_RETRY = { firstMs: 100, maxMs: 30_000, attempts: 12 } as const

/** What this process knows of one credential's row: what the next rotation replaces, and what seals for it. */
interface Held {
  /** The nonce of the token the row held when this process last read or wrote it: the compare-and-swap value. */
  nonce: string
  /** The registration this belongs to: a re-registration starts afresh. */
  createdAt: number
  binding: SealBinding
  caller: { iss: string; sub: string }
  /** A rotated token the store has not taken yet: newer than the row's, and the one IAM now expects. */
  pending?: Pending
}

interface Pending {
  sealed: SealedSecret
  rotatedAt: number
  /** Writes tried so far, in this round of retries. */
  attempts: number
  timer?: ReturnType<typeof setTimeout>
  /** A spill file holds this credential's held token (this one, or the one it superseded). */
  spilled?: boolean
  /** A save of it to the spill file is under way: the file may hold it any moment. */
  spilling?: boolean
}

/** The spill file may hold this credential's token, now or once a save under way ends: remove it when done with. */
const mayBeOnDisk = (p: Pending | undefined): boolean => p?.spilled === true || p?.spilling === true

/**
 * The IAM exchanger's RefreshTokenStore over the credential table: `get` opens the sealed token, `put`
 * stores a rotated one (compare-and-swap on the previous nonce, audited as credential.rotated) and `delete`
 * (IAM refused the token: expired or revoked there) revokes the credential, audited as credential.revoked.
 * A registration is written by the credential service itself, never through `put`: a `put` for a
 * credential that is missing or revoked is refused, so a refresh racing a revocation cannot revive it.
 *
 * IAM retires the old refresh token when it rotates, so a rotated token the store cannot take at once
 * (queue full, a busy or failing database) is not dropped: it is held here, sealed as the row would hold
 * it, used by every later `get` of this process, and written again with back-off until the write lands
 * or the row shows the credential revoked, registered afresh or rotated by another replica (then the
 * row's token wins). Once a write has failed it is also kept on local disk (held_token_spill.ts), so a
 * restart before the write lands takes it up again and goes on writing it (docs/job-credentials.md).
 */
export class SealedRefreshTokens implements RefreshTokenStore {
  readonly #store: CredentialStore & AuditLog
  readonly #cipher: CredentialCipher
  readonly #clock: Clock
  readonly #log: Logger
  readonly #held = new Map<string, Held>()
  /** Row operations per key, one after another: reads, writes and retries never interleave. */
  readonly #queue = new SerialByKey()
  readonly #spill: HeldTokenSpill | undefined
  readonly #revoker: RefreshTokenRevoker | undefined
  #closed = false

  /** `revoker`: revokes at IAM a rotated token dropped because the row no longer wants it (absent: none is). */
  constructor(deps: { store: CredentialStore & AuditLog; cipher: CredentialCipher; clock: Clock; log: Logger; spill?: HeldTokenSpill; revoker?: RefreshTokenRevoker }) {
    this.#store = deps.store
    this.#cipher = deps.cipher
    this.#clock = deps.clock
    this.#log = deps.log
    this.#revoker = deps.revoker
    // Only the process that claims the directory spills and takes spilled tokens up (held_token_spill.ts).
    this.#spill = deps.spill?.claim() ? deps.spill : undefined
    this.#restore()
  }

  /** Takes up the tokens an earlier run held when it stopped, and writes each again (after the first back-off). */
  #restore(): void {
    let taken = 0
    for (const t of this.#spill?.load() ?? []) {
      const key = credentialKey(t.user, t.provider)
      const binding: SealBinding = { user: t.user, provider: t.provider, scopes: t.scopes, audience: t.audience }
      try {
        // Sealed by this key for this very credential, or it is not ours to store.
        this.#cipher.open(t.sealed, binding)
      } catch {
        this.#log.error('ignoring a spilled refresh token that the credential key does not open for its credential', { user: t.user, provider: t.provider, file: this.#spill!.fileOf(key) })
        continue
      }
      const pending: Pending = { sealed: t.sealed, rotatedAt: t.rotatedAt, attempts: 0, spilled: true }
      this.#held.set(key, { nonce: t.previousNonce, createdAt: t.createdAt, binding, caller: t.caller, pending })
      this.#schedule(key, pending)
      taken++
    }
    if (taken > 0) this.#log.warn('took up rotated IAM refresh tokens an earlier run could not store; writing them again', { count: taken })
  }

  /**
   * After a failed write: the held token on disk too, unless the spill is off. Resolves once it is on disk
   * (or the save failed): whoever waits for it may rely on a restart finding the token.
   */
  async #keepOnDisk(key: string, h: Held, p: Pending): Promise<void> {
    if (!this.#spill) return
    const { user, provider, scopes, audience } = h.binding
    p.spilling = true
    let saved: boolean
    try {
      saved = await this.#spill.save(key, { user, provider, scopes: [...scopes], audience: [...audience], caller: h.caller, createdAt: h.createdAt, previousNonce: h.nonce, sealed: p.sealed, rotatedAt: p.rotatedAt })
    } finally {
      p.spilling = false
    }
    // Stored or dropped while the file was being written: the removal asked then (mayBeOnDisk) runs after
    // this save, in the spill's order for the key.
    if (saved) {
      p.spilled = true
    } else if (p.spilled) {
      // The file still holds the token this one superseded, which IAM retired when it issued this one.
      void this.#spill.remove(key)
      p.spilled = false
    }
  }

  /**
   * A credential the configured key cannot open is the operator's to fix (wrong or lost key), not the
   * user's: 503, so credmons keep what they have and retry, instead of 403, which would end the credential.
   */
  #open(c: StoredCredential): string {
    return this.#openSealed(c.sealed!, c)
  }

  #openSealed(sealed: SealedSecret, c: SealBinding): string {
    try {
      return this.#cipher.open(sealed, c)
    } catch (err) {
      if (!(err instanceof OperatorError)) throw err
      this.#log.error('cannot open a stored credential with the configured credential key', { user: c.user, provider: c.provider, keyId: sealed.keyId, configuredKeyId: this.#cipher.keyId, reason: err.message })
      throw new TemporarilyUnavailable('the broker cannot open this stored credential (credential key mismatch); the operator must restore the key', { cause: err, retryAfter: 300 })
    }
  }

  /**
   * A rotated token dropped because the row was revoked, registered afresh or rotated elsewhere while it
   * was unstored: IAM issued it and honours it, and no row or process holds it any more. The revocation of
   * the row's own token (by the admin, by the new registration) does not reach it, so it is revoked here,
   * best effort and without holding up the credential's queue.
   */
  #revokeOrphan(h: Held, p: Pending): void {
    if (!this.#revoker) return
    let refreshToken: string
    try {
      refreshToken = this.#cipher.open(p.sealed, h.binding)
    } catch {
      return
    }
    void this.#revoker({ issuer: h.caller.iss, refreshToken, user: h.binding.user, provider: h.binding.provider, what: 'a rotation the credential\'s row no longer wants' })
  }

  /** Forgets a key's held state, and a held token with it (revoked, replaced, or superseded by the row). */
  #drop(key: string): void {
    const h = this.#held.get(key)
    if (h?.pending?.timer) clearTimeout(h.pending.timer)
    if (mayBeOnDisk(h?.pending)) void this.#spill?.remove(key)
    this.#held.delete(key)
  }

  get(key: string): Promise<StoredRefreshToken | undefined> {
    return this.#queue.run(key, async () => {
      const { user, provider } = parseKey(key)
      const c = await this.#store.readCredential(user, provider)
      if (!c || c.revoked || !c.sealed || c.clientId === undefined) {
        const gone = this.#held.get(key)
        if (gone?.pending) this.#revokeOrphan(gone, gone.pending)
        this.#drop(key)
        return undefined
      }
      const h = this.#held.get(key)
      let refreshToken: string
      let obtainedAt = c.rotatedAt ?? c.createdAt
      if (h?.pending && c.createdAt === h.createdAt && c.sealed.nonce === h.nonce) {
        // The row still holds the token IAM retired when it rotated: the held one is the live one.
        refreshToken = this.#openSealed(h.pending.sealed, c)
        obtainedAt = h.pending.rotatedAt
        if (!h.pending.timer) this.#schedule(key, h.pending)
      } else {
        if (h?.pending) {
          // Registered afresh, revoked and re-registered, or rotated by another replica: the row wins.
          // A row holding the held token itself is its write landing unanswered: not an orphan.
          if (c.sealed.nonce !== h.pending.sealed.nonce) {
            this.#log.warn('dropping a held rotated refresh token: the stored credential changed meanwhile', { user, provider })
            this.#revokeOrphan(h, h.pending)
          }
          this.#drop(key)
        }
        refreshToken = this.#open(c)
        this.#held.set(key, { nonce: c.sealed.nonce, createdAt: c.createdAt, binding: { user, provider, scopes: c.scopes, audience: c.audience }, caller: { iss: c.iss, sub: c.sub } })
      }
      // kind scitoken: the row's scopes are the SciToken's; IAM granted the recheck scopes (groups).
      const grant = c.kind === 'iam' ? { scopes: c.scopes, audience: c.audience } : { scopes: recheckScopes(JSON.parse(c.subjectJson) as VerifiedSubject), audience: [] }
      return { refreshToken, issuer: c.iss, subject: c.sub, clientId: c.clientId, ...grant, obtainedAt }
    })
  }

  /**
   * Resolves once the rotated token is stored, or held for later `get`s while its write is retried; rejects
   * with AccessDenied when the credential was revoked while the token rotated, and with TemporarilyUnavailable
   * when it is live but changed meanwhile (registered afresh, rotated by another replica): the caller asks
   * again and is served from the row as it is now, instead of being told the credential is gone.
   */
  put(key: string, record: StoredRefreshToken): Promise<void> {
    return this.#queue.run(key, async () => {
      const h = this.#held.get(key)
      if (!h) throw new AccessDenied('the credential was revoked or replaced while its refresh token rotated')
      // A newer rotation supersedes a held token: IAM retired that one when it issued this one.
      if (h.pending?.timer) clearTimeout(h.pending.timer)
      const pending: Pending = { sealed: this.#cipher.seal(record.refreshToken, h.binding), rotatedAt: this.#clock.now(), attempts: 0, ...(mayBeOnDisk(h.pending) ? { spilled: true } : {}) }
      h.pending = pending
      let landed: true | 'gone' | 'changed'
      // Not skipped when `spilled` is set: inherited from a superseded token, it says the file holds that
      // one, which IAM retired when it issued this one.
      const slow = setTimeout(() => {
        if (h.pending !== pending) return
        void this.#keepOnDisk(key, h, pending).then(() => {
          // Said as it is, once the save has ended: with the spill off (another process holds the directory)
          // or a failed save, it is in memory only.
          this.#log.warn(pending.spilled
            ? 'a rotated IAM refresh token\'s store write is slow; keeping it on disk meanwhile'
            : 'a rotated IAM refresh token\'s store write is slow; it is held in memory only, and a restart before the write lands loses it', { user: h.binding.user, provider: h.binding.provider })
        })
      }, SPILL_PENDING_WRITE_AFTER_MS)
      slow.unref?.()
      try {
        landed = await this.#land(key, h, pending)
      } catch (err) {
        this.#log.warn('could not store a rotated IAM refresh token; holding it and retrying the write', { user: h.binding.user, provider: h.binding.provider, err: err instanceof Error ? err : undefined })
        // Awaited: the request that rotated the token is answered only once the token is on disk.
        if (h.pending === pending) await this.#keepOnDisk(key, h, pending)
        this.#schedule(key, pending)
        return
      } finally {
        clearTimeout(slow)
      }
      if (landed === 'gone') throw new CredentialGone('revoked', 'the credential was revoked while its refresh token rotated')
      if (landed === 'changed') throw new TemporarilyUnavailable('the credential was registered afresh or rotated elsewhere while its refresh token rotated; ask again', { retryAfter: 1 })
    })
  }

  /**
   * One write of a held token. True when it is stored (now, or by an earlier write whose answer was lost);
   * when the row no longer holds what it replaces, the held token is dropped and the answer says why:
   * `gone` (revoked or deleted) or `changed` (registered afresh, rotated elsewhere; still live). Throws
   * when the store failed: the token stays held.
   */
  async #land(key: string, h: Held, p: Pending): Promise<true | 'gone' | 'changed'> {
    p.attempts++
    const { user, provider } = h.binding
    const now = this.#clock.now()
    const ok = await this.#store.writeCredential(
      { action: 'rotate', user, provider, previousNonce: h.nonce, sealed: p.sealed, rotatedAt: p.rotatedAt },
      {
        type: 'credential.rotated', time: now, caller: h.caller, decision: 'allow', reason: 'IAM returned a new refresh token',
        detail: { user, provider, keyId: p.sealed.keyId, ...(p.attempts > 1 ? { attempts: p.attempts, rotatedAt: p.rotatedAt } : {}) },
      },
    )
    if (!ok) {
      const c = await this.#store.readCredential(user, provider)
      if (!(c && !c.revoked && c.sealed?.nonce === p.sealed.nonce)) {
        // A token a newer rotation superseded was retired by IAM then; only the newest is still honoured.
        if (h.pending === p) this.#revokeOrphan(h, p)
        if (this.#held.get(key) === h) this.#drop(key)
        return c && !c.revoked && c.sealed ? 'changed' : 'gone'
      }
    }
    if (h.pending === p) delete h.pending
    if (mayBeOnDisk(p)) void this.#spill?.remove(key)
    h.nonce = p.sealed.nonce
    return true
  }

  /** The next write of a held token, after a back-off; a bounded round, renewed by the next `get` that uses it. */
  #schedule(key: string, p: Pending): void {
    if (this.#closed) return
    const h = this.#held.get(key)
    if (!h || h.pending !== p) return
    // One timer per held token, however many paths ask for the next write.
    if (p.timer) clearTimeout(p.timer)
    if (p.attempts > ROTATION_RETRY.attempts) {
      this.#log.error(p.spilled
        ? 'a rotated IAM refresh token is still not stored; it is held in memory and on disk, and written again when the credential is next used or the broker restarts'
        : 'a rotated IAM refresh token is still not stored; it is held in memory only, and a restart loses it (the user must then register again)', { user: h.binding.user, provider: h.binding.provider, attempts: p.attempts })
      p.attempts = 0
      delete p.timer
      return
    }
    const delay = Math.min(ROTATION_RETRY.maxMs, ROTATION_RETRY.firstMs * 2 ** Math.max(0, p.attempts - 1))
    p.timer = setTimeout(() => {
      delete p.timer
      void this.#retry(key, p)
    }, delay)
    p.timer.unref?.()
  }

  #retry(key: string, p: Pending): Promise<void> {
    return this.#queue.run(key, async () => {
      const h = this.#held.get(key)
      if (!h || h.pending !== p) return
      try {
        if (await this.#land(key, h, p) === true) this.#log.info('stored a rotated IAM refresh token after retrying', { user: h.binding.user, provider: h.binding.provider, attempts: p.attempts })
        else this.#log.warn('dropped a held rotated refresh token: the credential was revoked, registered afresh or rotated elsewhere', { user: h.binding.user, provider: h.binding.provider })
      } catch (err) {
        this.#log.warn('could not store a rotated IAM refresh token; retrying', { user: h.binding.user, provider: h.binding.provider, attempts: p.attempts, err: err instanceof Error ? err : undefined })
        this.#schedule(key, p)
      }
    })
  }

  /** Rotated tokens the store has not taken yet, for metrics: all are held in memory, `disk` also spilled. */
  unstored(): { memory: number; disk: number } {
    let memory = 0
    let disk = 0
    for (const h of this.#held.values()) {
      if (!h.pending) continue
      memory++
      if (h.pending.spilled) disk++
    }
    return { memory, disk }
  }

  /**
   * Stops the retries after one last write of each held token (an orderly shutdown, before the store
   * closes), waiting at most CLOSE_WRITE_GRACE_MS: a write still pending then (the store hangs, or an
   * earlier write of the same credential does, ahead of it in the queue) is not waited for, and every
   * token still unstored is put on disk first. The disk gets a grace of its own: with SQLite it is often
   * the disk the hung database is on, and a save that never ends must not keep the shutdown from ending
   * either; the directory's lock then stays (the next start finds its process gone and takes it).
   */
  async close(): Promise<void> {
    this.#closed = true
    const last = Promise.all([...this.#held].filter(([, h]) => h.pending).map(([key, h]) => {
      if (h.pending!.timer) clearTimeout(h.pending!.timer)
      delete h.pending!.timer
      return this.#retry(key, h.pending!)
    }))
    const late = !(await settlesWithin(last, CLOSE_WRITE_GRACE_MS))
    const saves: Promise<void>[] = []
    if (late) for (const [key, h] of this.#held) if (h.pending && !h.pending.spilled) saves.push(this.#keepOnDisk(key, h, h.pending))
    // What is still not stored stays spilled, for the next start to take up: every save under way ends first.
    const onDisk = await settlesWithin(Promise.all(saves).then(() => this.#spill?.settled()), CLOSE_WRITE_GRACE_MS)
    if (late) {
      let kept = 0
      for (const h of this.#held.values()) if (h.pending?.spilled) kept++
      const { memory } = this.unstored()
      this.#log.error('the store did not answer the last writes of rotated IAM refresh tokens at shutdown; not waiting any longer', {
        graceMs: CLOSE_WRITE_GRACE_MS, unstored: memory, onDisk: kept,
      })
    }
    if (!onDisk) {
      this.#log.error('the disk did not finish keeping held rotated IAM refresh tokens at shutdown; not waiting any longer, and a token not yet on disk is lost with this process', {
        graceMs: CLOSE_WRITE_GRACE_MS, unstored: this.unstored().memory,
      })
      return
    }
    this.#spill?.release()
  }

  /**
   * Revokes the credential whose refresh token IAM refused, on record as credential.revoked; only while the
   * row still holds that token (read as `c`): a registration or rotation that lands after the row was last
   * read is not what IAM refused. False when the row changed so.
   */
  #revokeRefused(c: StoredCredential): Promise<boolean> {
    return revokeStored(this.#store, c, { by: 'iam', reason: 'IAM refused the stored refresh token (expired or revoked at IAM)', now: this.#clock.now(), ...(c.sealed ? { ifNonce: c.sealed.nonce } : {}) })
  }

  delete(key: string, ifRefreshToken?: string): Promise<boolean> {
    return this.#queue.run(key, async () => {
      const { user, provider } = parseKey(key)
      const h = this.#held.get(key)
      if (h?.pending && ifRefreshToken !== undefined) {
        // IAM refused a token while this process holds a newer one than the row's: when it is the held one
        // IAM refused, the credential is over unless the row changed meanwhile; when it is older, the held
        // one is tried instead.
        if (this.#openSealed(h.pending.sealed, h.binding) !== ifRefreshToken) return false
        const c = await this.#store.readCredential(user, provider)
        if (!c || c.revoked || !c.sealed) {
          this.#drop(key)
          return true
        }
        if (c.createdAt !== h.createdAt || c.sealed.nonce !== h.nonce) {
          this.#drop(key)
          return false
        }
        this.#drop(key)
        return await this.#revokeRefused(c) || await this.#goneSince(user, provider)
      }
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
      this.#drop(key)
      return await this.#revokeRefused(c) || await this.#goneSince(user, provider)
    })
  }

  /** After a revocation that changed nothing: true when the row is revoked or gone now (someone else did it), false when it is live with another token. */
  async #goneSince(user: string, provider: string): Promise<boolean> {
    const now = await this.#store.readCredential(user, provider)
    return !now || now.revoked || !now.sealed
  }
}

/** Revokes a stored credential with its audit record; false when it was already revoked or is unknown. */
export function revokeStored(store: CredentialStore, c: Pick<StoredCredential, 'user' | 'provider'>, o: { by: string; reason?: string; now: number; requestId?: string; ifNonce?: string }): Promise<boolean> {
  return store.writeCredential(
    { action: 'revoke', user: c.user, provider: c.provider, revokedAt: o.now, revokedBy: o.by, ...(o.ifNonce !== undefined ? { ifNonce: o.ifNonce } : {}) },
    {
      type: 'credential.revoked', time: o.now, caller: { sub: o.by }, decision: 'allow',
      ...(o.requestId ? { requestId: o.requestId } : {}),
      ...(o.reason ? { reason: o.reason } : {}),
      detail: { user: c.user, provider: c.provider },
    },
  )
}

/** True when `p` settles within `ms`; false when the time runs out first (`p` is not waited for any longer). */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return (await withinMs(p.then(() => true, () => true), ms)) ?? false
}
