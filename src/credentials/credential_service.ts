import { hash, randomBytes } from 'node:crypto'
import type { AuditLog } from '../audit/audit_log.ts'
import { credentialName, parseUser, VAULT_CREDS_PREFIX, type BrokerTop, type RegisterCredentialResponse, type RegistrationMode, type VaultTop } from '../contract/job_credentials.ts'
import { AccessDenied, BrokerError, InvalidRequest, InvalidToken, SlowDown, TemporarilyUnavailable } from '../errors.ts'
import { delegationRefusal } from '../iam/delegation.ts'
import { IamTokenExchanger } from '../iam/outbound_exchange.ts'
import { MemoryRefreshTokenStore } from '../iam/refresh_token_store.ts'
import type { IamDiscovery } from '../iam/discovery.ts'
import type { SubjectTokenVerifier, VerifiedSubject } from '../iam/subject.ts'
import { callerOf, recordDenial } from '../issuance/issue.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import type { Policy } from '../policy/compile.ts'
import type { RequestLimits } from '../ratelimit/request_limits.ts'
import { decide } from '../policy/decide.ts'
import { policyForVault, vaultMayRead } from '../policy/credd_fetch.ts'
import type { IssuanceBlocks } from '../revocation/revocation_checker.ts'
import type { CredentialCipher } from './credential_cipher.ts'
import type { CredentialStore, StoredCredential } from './credential_store.ts'
import type { CredentialProvider } from './credentials_config.ts'
import type { JobTokens } from './job_tokens.ts'
import { recheckAudience, recheckScopes, renewedCaller } from './iam_recheck_grant.ts'
import { refreshTokenRevoker, type RefreshTokenRevoker } from './revoke_at_iam.ts'
import { credentialKey, revokeStored } from './sealed_refresh_tokens.ts'

export interface RegisterInput {
  provider: string
  /** The submit file's handle: the credential is `<provider>_<handle>`, apart from the provider's other handles. */
  handle?: string
  scopes?: string
  audience?: string
  mode: RegistrationMode
}

/** A registration as read from its request: the user's IAM access token and what they ask for. */
export interface RegistrationRequest {
  subjectToken: string
  input: RegisterInput
}

export interface CredentialServiceDeps {
  store: CredentialStore & AuditLog
  cipher: CredentialCipher
  verifier: SubjectTokenVerifier
  discovery: IamDiscovery
  policy: () => Policy
  providers: () => readonly CredentialProvider[]
  blocks: IssuanceBlocks
  jobTokens: JobTokens
  clock: Clock
  log: Logger
  /** Written into broker-mode `.top` files. */
  brokerUrl: string
  /** `https://HOST:8200` for vault-mode `.top` files; absent: the Vault-compatible listener is off. */
  vaultUrl?: string
  /** `credentials.max_per_user`: live credentials one HTCondor user may hold. */
  maxPerUser: number
  /** The broker's rate limits (src/ratelimit): the address block, and the per-caller registration limit. */
  limits?: Pick<RequestLimits, 'blockedAddress' | 'noteRefused' | 'admitRegistration'>
}

/**
 * Registration, revocation and listing of users' job credentials. Registration verifies the user's IAM
 * token, lets the policy decide the HTCondor user, scopes and audience (never the request), and obtains
 * the user's IAM refresh token by token exchange with `offline_access`, sealed before it is stored: kind
 * iam refreshes it for job tokens, kind scitoken to have IAM confirm the user before it mints. The row
 * and its audit record commit together.
 */
export class CredentialService {
  readonly #deps: CredentialServiceDeps
  readonly #revoker: RefreshTokenRevoker

  constructor(deps: CredentialServiceDeps) {
    this.#deps = deps
    this.#revoker = refreshTokenRevoker(deps)
  }

  /**
   * @param readRequest the user's IAM token and what they ask for; may throw a BrokerError (no bearer, a
   *   body that is not the request). It is handed over unread, as to exchangeToken, so that a blocked
   *   address is refused before anything of its request is looked at, and a request refused before its
   *   token verifies counts against its address whatever was wrong with it.
   */
  async register(readRequest: () => Promise<RegistrationRequest>, ctx: { requestId: string; clientAddress?: string }): Promise<RegisterCredentialResponse> {
    const d = this.#deps
    // As at POST /token: an address whose unauthenticated requests keep being refused is turned away
    // before its request is read or IAM is asked about its token, and every refusal until the token has
    // verified counts against its address.
    const addressBlocked = d.limits?.blockedAddress(ctx.clientAddress)
    if (addressBlocked) throw new SlowDown(addressBlocked.description, addressBlocked.retryAfter)
    let request: RegistrationRequest
    try {
      request = await readRequest()
    } catch (err) {
      if (err instanceof BrokerError && err.status < 500) d.limits?.noteRefused(ctx.clientAddress)
      throw err
    }
    const { subjectToken, input } = request
    let subject: VerifiedSubject
    try {
      subject = await d.verifier.verify(subjectToken)
    } catch (err) {
      // Contract: a bad IAM token is invalid_token; IAM being down stays a 503.
      if (err instanceof BrokerError && err.status !== 503) {
        d.limits?.noteRefused(ctx.clientAddress)
        throw new InvalidToken(`the IAM access token was refused: ${err.description}`, { presented: true })
      }
      throw err
    }
    const provider = d.providers().find((p) => p.name === input.provider)
    const scopes = input.scopes?.split(' ').filter((s) => s.length > 0)
    const audience = input.audience !== undefined ? [input.audience] : []
    const denyAudited = async (err: BrokerError, extra: { role?: string; ruleId?: string } = {}) => {
      await recordDenial({ error: err.error, reason: err.description, ...(extra.ruleId ? { ruleId: extra.ruleId } : {}) },
        { ...(extra.role ? { role: extra.role } : {}), ...(scopes ? { scopes } : {}), audience }, { ...ctx, caller: subject }, { audit: d.store, clock: d.clock })
        .catch((e: unknown) => d.log.error('could not audit a credential refusal', { err: e, requestId: ctx.requestId }))
      return err
    }
    // Every registration of a verified caller counts, before it costs IAM an exchange. The first refusal in
    // an audit window is recorded; the rest are not, so hammering the limit writes no record per request.
    const limited = await d.limits?.admitRegistration(subject)
    if (limited) {
      const err = new SlowDown(limited.description, limited.retryAfter)
      throw limited.record ? await denyAudited(err) : err
    }
    // As at POST /token (src/iam/delegation.ts): a token another client holds for the user registers nothing.
    const actedFor = delegationRefusal(subject)
    if (actedFor !== undefined) throw await denyAudited(new InvalidRequest(actedFor))
    if (!provider) throw await denyAudited(new InvalidRequest(`unknown credential provider "${input.provider}"`))
    if (input.mode === 'vault' && d.vaultUrl === undefined) throw await denyAudited(new InvalidRequest('the Vault-compatible listener is not enabled on this broker'))
    const blocked = d.blocks.blockedCaller(subject)
    if (blocked) throw await denyAudited(new AccessDenied(blocked), { role: provider.role })

    // kind scitoken: decided as every later mint will be, on what IAM's rechecks renew.
    const decided = provider.kind === 'iam' ? subject : renewedCaller(subject)
    const asked = { subject: decided, role: provider.role, tokenKind: provider.kind === 'iam' ? 'access_token' as const : 'scitoken' as const, audience, ...(scopes ? { scopes } : {}) }
    // One snapshot: a reload between the two decisions must not mix two policies.
    const policy = d.policy()
    let decision = decide(policy, asked)
    if (!decision.allow) throw await denyAudited(new AccessDenied(decision.reason), { role: provider.role, ...(decision.ruleId ? { ruleId: decision.ruleId } : {}) })
    // Vault mode: refused here, with the reason for the storer to print, when no Vault read would be served,
    // and decided as those reads will be, under only the grants that allow them (fetched_by.vault_reads).
    if (input.mode === 'vault') {
      const vault = vaultMayRead(policy, provider.role, decided)
      if (!vault.allow) throw await denyAudited(new AccessDenied(vault.reason), { role: provider.role, ruleId: decision.ruleId })
      decision = decide(policyForVault(policy, provider.role), asked)
      if (!decision.allow) throw await denyAudited(new AccessDenied(`not under a grant that allows Vault reads: ${decision.reason}`), { role: provider.role, ...(decision.ruleId ? { ruleId: decision.ruleId } : {}) })
    }
    const user = parseUser(decision.identity.slice(0, Math.max(0, decision.identity.lastIndexOf('@'))))
    if (!user) throw await denyAudited(new AccessDenied('the identity the policy grants is not a valid HTCondor user name'), { role: provider.role, ruleId: decision.ruleId })
    const identityBlocked = d.blocks.blockedIdentity(decision.identity)
    if (identityBlocked) throw await denyAudited(new AccessDenied(identityBlocked), { role: provider.role, ruleId: decision.ruleId })

    const now = d.clock.now()
    // What the credd stores it as, and so what it is kept as here: each handle is its own credential.
    const name = credentialName(provider.name, input.handle)
    // Each handle is a row and a refresh token kept fresh at IAM: bounded per user, checked before IAM is
    // asked. Replacing one of them adds nothing. Registrations racing past the check may overshoot it by
    // their number; the bound is against accumulation, not a count to the unit.
    const held = await d.store.countLiveCredentials(user, name)
    if (held >= d.maxPerUser) {
      throw await denyAudited(new AccessDenied(`${user} already holds ${held} job credentials and a user may hold at most ${d.maxPerUser} (credentials.max_per_user); register one of them again, or ask an administrator to revoke unused ones`), { role: provider.role, ruleId: decision.ruleId })
    }
    const binding = { user, provider: name, scopes: decision.scopes, audience: decision.audience }
    let credential: StoredCredential = {
      ...binding, kind: provider.kind, iss: subject.iss, sub: subject.sub,
      subjectJson: JSON.stringify(storableSubject(subject)), createdAt: now, revoked: false,
    }
    // Both kinds hold the user's IAM refresh token: kind iam refreshes it for every job token, kind
    // scitoken to have IAM confirm the user (and their groups) before minting.
    const scratchKey = credentialKey(user, name)
    const grant = provider.kind === 'iam'
      ? { scopes: decision.scopes, audience: decision.audience }
      : { scopes: recheckScopes(subject), audience: recheckAudience(d.discovery.issuer(subject.iss)?.config.audience) }
    let obtained
    try {
      obtained = await this.#obtainRefreshToken(subjectToken, subject, grant, scratchKey)
    } catch (err) {
      // IAM's refusals (a scope or offline_access not granted, the token not exchangeable) are the
      // caller's denials and audited as such; IAM being down is not a decision about the caller.
      if (err instanceof BrokerError && err.status !== 503) throw await denyAudited(err, { role: provider.role, ruleId: decision.ruleId })
      throw err
    }
    const { got, rt } = obtained
    // kind iam: the credential is what IAM granted; kind scitoken: what the policy decided (the broker mints).
    const granted = provider.kind === 'iam' ? { ...binding, scopes: got.scopes.filter((s) => s !== 'offline_access'), audience: got.audience } : binding
    credential = { ...credential, ...granted, clientId: rt.clientId, sealed: d.cipher.seal(rt.refreshToken, granted) }
    let vaultToken: string | undefined
    if (input.mode === 'vault') {
      vaultToken = `ctbv.${randomBytes(32).toString('base64url')}`
      credential = { ...credential, vaultTokenSha256: hash('sha256', vaultToken, 'hex') }
    }
    // The registration replaces any earlier one: its refresh token must not stay live at IAM unheld. The
    // write replaces only the row read here (compare-and-swap), so the token revoked below is the one the
    // row held, and a registration that lost a race to another one is known to have lost.
    const replaced = await d.store.readCredential(user, name)
    const written = await d.store.writeCredential({ action: 'register', credential, replacing: replaced?.sealed?.nonce ?? null }, {
      type: 'credential.registered', time: now, requestId: ctx.requestId, caller: callerOf(subject),
      ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
      role: provider.role, issuedSub: decision.identity, scopes: credential.scopes, audience: credential.audience,
      policyRule: decision.ruleId, decision: 'allow',
      detail: { user, provider: name, kind: provider.kind, mode: input.mode, ...(credential.sealed ? { keyId: credential.sealed.keyId } : {}) },
    })
    if (!written) await this.#lostRace(credential, input.mode)
    else {
      d.jobTokens.forget(user, name)
      if (replaced?.sealed && !replaced.revoked) await this.#revokeAtIam(replaced)
    }
    const narrowed = {
      ...(credential.scopes.length > 0 && input.scopes !== undefined ? { scopes: credential.scopes.join(' ') } : {}),
      ...(input.audience !== undefined ? { audience: credential.audience.join(' ') } : {}),
    }
    const top: BrokerTop | VaultTop = vaultToken !== undefined
      ? { vault_token: vaultToken, vault_url: `${d.vaultUrl}${VAULT_CREDS_PREFIX}/${user}/${name}`, ...narrowed }
      : { broker_url: d.brokerUrl, user, provider: name, ...narrowed }
    return { user, provider: name, top }
  }

  /**
   * RFC 8693 exchange of the user's token at its IAM with `offline_access`: the refresh token comes back
   * through a store of our own for this one request, so it is sealed before anything durable sees it.
   */
  async #obtainRefreshToken(subjectToken: string, subject: VerifiedSubject, grant: { scopes: string[]; audience: string[] }, key: string) {
    const d = this.#deps
    const scratch = new MemoryRefreshTokenStore()
    const exchanger = new IamTokenExchanger({ discovery: d.discovery, store: scratch, clock: d.clock, log: d.log })
    const got = await exchanger.exchange({ subjectToken, subject, scopes: grant.scopes, audience: grant.audience, offlineAccess: { key } })
    const rt = await scratch.get(key)
    if (!rt) throw new TypeError('the exchanger reported a stored refresh token that is not there')
    return { got, rt }
  }

  /**
   * The row changed between our read and our write: another registration of this credential (or a refresh
   * rotating its token) landed first, and its row stands. Our refresh token is held by nothing, so it is
   * revoked at IAM; the winner's row, its token and its cached job tokens are left alone. When the row now
   * holds what this caller asked for (same user at IAM, scopes, audience; broker mode, whose `.top` holds
   * no secret) the caller is answered as registered, since two submits of one file race like this; else
   * it is told to register again.
   */
  async #lostRace(ours: StoredCredential, mode: RegistrationMode): Promise<void> {
    const d = this.#deps
    await this.#revokeAtIam(ours, 'a registration that lost a race')
    const now = await d.store.readCredential(ours.user, ours.provider)
    d.log.info('a registration lost a race with another change of the same credential; its own refresh token is revoked at IAM', { user: ours.user, provider: ours.provider })
    const same = now !== undefined && !now.revoked && now.sealed !== undefined && now.vaultTokenSha256 === undefined && mode === 'broker'
      && now.kind === ours.kind && now.iss === ours.iss && now.sub === ours.sub
      && now.scopes.join(' ') === ours.scopes.join(' ') && now.audience.join(' ') === ours.audience.join(' ')
    if (!same) throw new TemporarilyUnavailable('another registration of this credential landed at the same moment; register again', { retryAfter: 1 })
  }

  /** Revokes one credential (audited); false when it is unknown or already revoked. The refresh token's ciphertext is dropped. */
  async revoke(user: string, provider: string, by: string, o: { reason?: string; requestId?: string } = {}): Promise<boolean> {
    const before = await this.#deps.store.readCredential(user, provider)
    const done = await revokeStored(this.#deps.store, { user, provider }, { by, now: this.#deps.clock.now(), ...o })
    this.#deps.jobTokens.forget(user, provider)
    if (done && before?.sealed) await this.#revokeAtIam(before)
    return done
  }

  /** Best effort: tell IAM the refresh token is dead too (RFC 7009), so it does not outlive its row there. */
  async #revokeAtIam(c: StoredCredential, what = 'a revoked or replaced credential'): Promise<void> {
    let refreshToken: string
    try {
      refreshToken = this.#deps.cipher.open(c.sealed!, c)
    } catch (err) {
      this.#deps.log.warn(`could not revoke the refresh token of ${what} at IAM`, { issuer: c.iss, user: c.user, provider: c.provider, err: err instanceof Error ? err : undefined })
      return
    }
    await this.#revoker({ issuer: c.iss, refreshToken, user: c.user, provider: c.provider, what })
  }

  list(): Promise<StoredCredential[]> {
    return this.#deps.store.listCredentials()
  }
}

/** The claims a later policy decision may use (identity templates, group matches); no token, nothing secret. */
function storableSubject(s: VerifiedSubject): VerifiedSubject {
  const claims: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(s.claims)) if (typeof v === 'string' || typeof v === 'number' || (Array.isArray(v) && v.every((x) => typeof x === 'string'))) claims[k] = v
  return { ...s, claims }
}
