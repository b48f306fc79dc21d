import { AccessDenied, AuditStoreUnavailable, BrokerError, CredentialGone, InvalidGrant, TemporarilyUnavailable } from '../errors.ts'
import type { IamTokenExchanger } from '../iam/outbound_exchange.ts'
import type { SubjectTokenVerifier, VerifiedSubject } from '../iam/subject.ts'
import type { Clock } from '../lib/clock.ts'
import { SingleFlight } from '../lib/keyed_promises.ts'
import type { Logger } from '../lib/logger.ts'
import { CONFIRMATION_SKEW_SECONDS, type CredentialStore, type StoredConfirmation, type StoredCredential } from './credential_store.ts'
import { recheckAudience, recheckScopes } from './iam_recheck_grant.ts'
import { credentialKey } from './sealed_refresh_tokens.ts'

/** What IAM said before a mint: asked now and confirmed, asked now but unreachable (within grace), or not due. */
export type RecheckOutcome = 'confirmed' | 'iam-unavailable' | 'not-due'

export interface Confirmation {
  /** The claims the policy decides on: the registration's, with group membership as IAM last confirmed it. */
  subject: VerifiedSubject
  /** Epoch seconds of IAM's last confirmation (the registration counts as one). */
  confirmedAt: number
  outcome: RecheckOutcome
}

export interface IamRecheckDeps {
  /** The exchanger whose refresh-token store is the sealed credential table (rotation and revocation included). */
  exchanger: Pick<IamTokenExchanger, 'refresh'>
  /** Where a confirmation is kept for every replica and the next start. */
  store: Pick<CredentialStore, 'confirmCredential'>
  /** The inbound verifier: IAM's refreshed access token passes the same checks as a caller's token. */
  verifier: SubjectTokenVerifier
  /** The `aud` values the broker accepts from an issuer (its `audience` setting), if it checks any. */
  issuerAudience: (iss: string) => readonly string[] | undefined
  clock: Clock
  log: Logger
  intervalSeconds: number
  graceSeconds: number
}

/**
 * The exchanger's invalid_grant as the caller's refusal. Only IAM's own answer (its cause) is IAM refusing
 * the refresh token, after which the exchanger's store has revoked the row (revokedByIam tells it): the
 * credential is gone for good, and the answer says so. The exchanger also says invalid_grant, unasked, when
 * the broker has no client at that IAM any more or the row went while it was read: `unasked` then begins
 * the message, and nothing says the credential is gone (the next read finds out from the row).
 */
export function refusedRefresh(err: InvalidGrant, unasked: string): AccessDenied {
  if (err.cause !== undefined) return new CredentialGone('revoked', `IAM refused the stored refresh token; register again (${err.description})`, { cause: err })
  return new AccessDenied(`${unasked}: ${err.description}`)
}

/** True for the refusal that follows IAM refusing the refresh token: the row is revoked and on record already. */
export function revokedByIam(err: unknown): boolean {
  return err instanceof AccessDenied && err.cause instanceof InvalidGrant
}

interface Held {
  /** The registration this belongs to: a re-registration starts from its own claims. */
  createdAt: number
  confirmedAt: number
  subject: VerifiedSubject
  /** IAM was unreachable: not asked again before this (epoch seconds). */
  retryAt?: number
  /**
   * When this process last asked IAM and IAM answered without confirming the user: no confirmation asked
   * for before then (another replica's, stored later) serves here; IAM is asked again.
   */
  refusedAt?: number
}

/**
 * Keeps IAM the authority on who a scitoken-kind credential's user is. A SciToken is minted only under an
 * IAM confirmation no older than the interval: an older one is renewed by refreshing the refresh token
 * obtained at registration (once per credential however many jobs ask: single flight), and the groups in
 * IAM's answer replace the stored ones for the policy decision. IAM refusing the refresh token revokes the
 * credential (the exchanger's store does that, audited); IAM unreachable is tolerated while the last
 * confirmation is younger than interval + grace, then 503.
 *
 * A confirmation is kept on the credential's row (when and the groups IAM stated), so every replica and
 * a restarted broker decide on the latest one, whichever process obtained it; this process's own copy
 * serves when the store could not take it. Only when IAM was last asked and found unreachable stays per
 * process (`retryAt`).
 */
export class IamRecheck {
  readonly #deps: IamRecheckDeps
  readonly #held = new Map<string, Held>()
  readonly #inflight = new SingleFlight<Confirmation>()

  constructor(deps: IamRecheckDeps) {
    this.#deps = deps
  }

  async confirm(cred: StoredCredential): Promise<Confirmation> {
    if (!cred.sealed || cred.clientId === undefined) {
      // Registered before the broker kept an IAM refresh token for this kind: nothing to ask IAM with.
      throw new CredentialGone('outdated', 'this credential was registered before the broker checked users at IAM and holds no IAM refresh token; register again (condor_submit, or condor-token-broker credential-storer --force)')
    }
    const key = credentialKey(cred.user, cred.provider)
    const now = this.#deps.clock.now()
    const last = this.#last(key, cred, now)
    const refused = last.refusedAt !== undefined && last.confirmedAt <= last.refusedAt
    if (!refused && now - last.confirmedAt < this.#deps.intervalSeconds) return { subject: last.subject, confirmedAt: last.confirmedAt, outcome: 'not-due' }
    if (last.retryAt !== undefined && now < last.retryAt) return this.#unconfirmed(cred, last, now, last.retryAt - now)
    return this.#inflight.run(`${key}\n${cred.createdAt}`, () => this.#ask(key, cred, last))
  }

  /** Drops what this process holds for a credential (revocation, re-registration). */
  forget(user: string, provider: string): void {
    this.#held.delete(credentialKey(user, provider))
  }

  /**
   * The latest confirmation of this registration: this process's, or the row's if another process (or an
   * earlier run) made a later one. One dated in this process's future (beyond the skew allowance) is not
   * trusted: a replica with a clock ahead would otherwise spare every other replica from asking IAM.
   */
  #last(key: string, cred: StoredCredential, now: number): Held {
    const held = this.#held.get(key)
    const mine = held?.createdAt === cred.createdAt ? held : undefined
    const stored = cred.confirmation
    if (stored && stored.at > now + CONFIRMATION_SKEW_SECONDS) {
      this.#deps.log.warn('ignoring a stored IAM confirmation dated in the future (clock skew between broker replicas?)', { user: cred.user, provider: cred.provider, confirmedAt: stored.at, now })
    } else if (stored && stored.at > (mine?.confirmedAt ?? cred.createdAt)) {
      return {
        createdAt: cred.createdAt, confirmedAt: stored.at, subject: withGroups(JSON.parse(cred.subjectJson) as VerifiedSubject, stored),
        ...(mine?.refusedAt !== undefined ? { refusedAt: mine.refusedAt } : {}),
      }
    }
    return mine ?? { createdAt: cred.createdAt, confirmedAt: cred.createdAt, subject: JSON.parse(cred.subjectJson) as VerifiedSubject }
  }

  async #ask(key: string, cred: StoredCredential, last: Held): Promise<Confirmation> {
    const d = this.#deps
    // A confirmation is dated when IAM was asked, not when its answer was verified: an answer that took
    // long must not pass for newer than one asked for after it (and the interval then counts from earlier).
    const askedAt = d.clock.now()
    try {
      const got = await d.exchanger.refresh(key, { scopes: recheckScopes(last.subject), audience: recheckAudience(d.issuerAudience(cred.iss)) })
      const fresh = await d.verifier.verify(got.accessToken)
      if (fresh.iss !== cred.iss || fresh.sub !== cred.sub) throw new AccessDenied('IAM answered the refresh for another user than the one who registered')
      const stated = groupsStated(fresh)
      const subject = withGroups(last.subject, stated)
      this.#held.set(key, { createdAt: cred.createdAt, confirmedAt: askedAt, subject })
      await this.#keep(cred, { at: askedAt, ...stated })
      return { subject, confirmedAt: askedAt, outcome: 'confirmed' }
    } catch (err) {
      // IAM refused the refresh token (user disabled, suspended or removed, token revoked or expired): the
      // exchanger's store has revoked the credential, as for kind iam. Refused unasked, nothing was
      // revoked: refused as unconfirmed, which the caller records.
      if (err instanceof InvalidGrant) throw refusedRefresh(err, 'IAM could not be asked to confirm this user')
      // The broker's own store failing (a rotated refresh token it could not keep) is no word from IAM:
      // answered as the outage it is, not as IAM unreachable.
      if (err instanceof AuditStoreUnavailable) throw err
      if (err instanceof TemporarilyUnavailable) {
        const now = d.clock.now()
        this.#held.set(key, { ...last, retryAt: now + err.retryAfter })
        return this.#unconfirmed(cred, last, now, err.retryAfter, err)
      }
      // IAM answered but did not confirm (a group scope refused, a token that fails verification): fail closed,
      // and no confirmation asked for before this answer serves this process any more.
      if (err instanceof AccessDenied || err instanceof BrokerError) {
        this.#held.set(key, { ...last, refusedAt: askedAt })
        if (err instanceof AccessDenied) throw err
        throw new AccessDenied(`IAM did not confirm this user: ${err.description}`, { cause: err })
      }
      throw err
    }
  }

  /** On the row, for the other replicas and the next start; this process holds it anyway, so a failure only costs them a recheck. */
  async #keep(cred: StoredCredential, confirmation: StoredConfirmation): Promise<void> {
    try {
      await this.#deps.store.confirmCredential({ user: cred.user, provider: cred.provider, createdAt: cred.createdAt, iss: cred.iss, sub: cred.sub, confirmation, now: this.#deps.clock.now() })
    } catch (err) {
      this.#deps.log.warn('could not store an IAM confirmation; other replicas and a restart will ask IAM again', { user: cred.user, provider: cred.provider, err: err instanceof Error ? err : undefined })
    }
  }

  /** IAM could not be asked: the last confirmation serves while it is within interval + grace. */
  #unconfirmed(cred: StoredCredential, last: Held, now: number, retryAfter: number, cause?: unknown): Confirmation {
    const d = this.#deps
    // IAM's last answer here did not confirm the user: an outage since is no reason to go back to an older one.
    if (last.refusedAt !== undefined && last.confirmedAt <= last.refusedAt) {
      throw new AccessDenied('IAM did not confirm this user when last asked, and cannot be asked again now', { ...(cause ? { cause } : {}) })
    }
    const age = now - last.confirmedAt
    if (age < d.intervalSeconds + d.graceSeconds) {
      if (cause) d.log.warn('IAM unavailable: minting under the last confirmation of a scitoken credential, within its grace', { user: cred.user, provider: cred.provider, confirmedAt: last.confirmedAt, ageSeconds: age })
      return { subject: last.subject, confirmedAt: last.confirmedAt, outcome: 'iam-unavailable' }
    }
    throw new TemporarilyUnavailable(`IAM has not confirmed this user for ${age} s (more than the recheck interval and grace allow); try again later`, { ...(cause ? { cause } : {}), retryAfter: Math.max(1, retryAfter) })
  }
}

/** The groups IAM's answer states, and the claim it states them in. */
function groupsStated(fresh: VerifiedSubject): Pick<StoredConfirmation, 'groups' | 'claim'> {
  const claim = Array.isArray(fresh.claims['wlcg.groups']) ? 'wlcg.groups' : Array.isArray(fresh.claims.groups) ? 'groups' : null
  return { groups: [...fresh.groups], claim }
}

/**
 * The registration's claims with group membership as IAM stated it. Only groups change: the identity
 * claims (names), the registering client and its scopes stay as registered, since IAM's refreshed token
 * is the broker's own, not the user's.
 */
function withGroups(stored: VerifiedSubject, stated: Pick<StoredConfirmation, 'groups' | 'claim'>): VerifiedSubject {
  const claims: Record<string, unknown> = { ...stored.claims }
  delete claims['wlcg.groups']
  delete claims.groups
  if (stated.claim !== null) claims[stated.claim] = [...stated.groups]
  return { ...stored, groups: [...stated.groups], claims }
}
