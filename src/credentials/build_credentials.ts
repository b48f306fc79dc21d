import { join } from 'node:path'
import type { Config } from '../config.ts'
import type { IamAdapter } from '../iam/create_iam_adapter.ts'
import { IamTokenExchanger } from '../iam/outbound_exchange.ts'
import { issueDepsFrom } from '../issuance/issue.ts'
import type { SigningKeys } from '../keys/signing_keys.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import { observeAudit } from '../metrics/observe_pipeline.ts'
import type { BrokerObserver } from '../metrics/observer.ts'
import type { PolicyHolder } from '../policy/policy_holder.ts'
import type { RequestLimits } from '../ratelimit/request_limits.ts'
import type { RevocationService } from '../revocation/revocation_service.ts'
import type { BrokerStore } from '../storage/chained_store.ts'
import { CredentialCipher, loadCredentialKey } from './credential_cipher.ts'
import { CredentialService } from './credential_service.ts'
import { IamRecheck } from './iam_recheck.ts'
import type { CreddAuthDeps } from './credd_auth.ts'
import { JobTokens } from './job_tokens.ts'
import { HeldTokenSpill } from './held_token_spill.ts'
import { refreshTokenRevoker } from './revoke_at_iam.ts'
import { SealedRefreshTokens } from './sealed_refresh_tokens.ts'

/** The job-credential subsystem as serve runs it. */
export interface CredentialServices {
  service: CredentialService
  jobTokens: JobTokens
  credd: CreddAuthDeps
  /** Base URL of the Vault-compatible listener as credmons reach it, when it is enabled. */
  vaultUrl?: string
  /**
   * Writes each rotated refresh token the store could not take yet once more, then stops retrying: call
   * at shutdown before the store closes, so a restart does not lose one that would land now.
   */
  close(): Promise<void>
  /** Rotated refresh tokens the store has not taken yet (metrics). */
  unstoredRefreshTokens(): { memory: number; disk: number }
}

/** Where rotated refresh tokens the store could not take yet wait for a restart (held_token_spill.ts). */
export function heldTokenDir(config: Config): string {
  return join(config.data_dir, 'credentials', 'held')
}

/** Where the credential key file is unless configured. */
export function credentialKeyFile(config: Config): string {
  return config.credentials.key_file ?? join(config.data_dir, 'keys', 'credentials.key')
}

/**
 * Wires stored credentials from built services. The sealing key comes from the environment or its file
 * (created only outside production); it is never written to the database.
 */
export function buildCredentials(parts: {
  config: Config
  keys: SigningKeys
  store: BrokerStore
  iam: IamAdapter
  policy: PolicyHolder
  revocations: RevocationService
  clock: Clock
  log: Logger
  production: boolean
  env: NodeJS.ProcessEnv
  /** The broker's metrics: job tokens count as issued tokens, as at POST /token. */
  observer?: BrokerObserver
  /** The broker's rate limits; absent (CLI and tests that do not register), registration is not limited. */
  limits?: RequestLimits
}): CredentialServices {
  const { config, keys, store, iam, policy, revocations, clock, log } = parts
  const c = config.credentials
  const { key, created } = loadCredentialKey({ file: credentialKeyFile(config), envName: c.key_env, create: !parts.production }, parts.env)
  if (created) log.warn('created a DEVELOPMENT credential key; production takes it from a file or the environment', { file: created })
  const cipher = new CredentialCipher(key)
  const spill = new HeldTokenSpill(heldTokenDir(config), log)
  const refreshTokens = new SealedRefreshTokens({ store, cipher, clock, log, spill, revoker: refreshTokenRevoker({ discovery: iam.discovery, log }) })
  const exchanger = new IamTokenExchanger({ discovery: iam.discovery, store: refreshTokens, clock, log })
  const recheck = new IamRecheck({
    exchanger, store, verifier: iam.verifier, issuerAudience: (iss) => iam.discovery.issuer(iss)?.config.audience, clock, log,
    intervalSeconds: c.iam_recheck_interval, graceSeconds: c.iam_recheck_grace ?? c.iam_recheck_interval,
  })
  const providers = () => c.providers
  const audit = parts.observer ? observeAudit(store, parts.observer) : store
  const jobTokens = new JobTokens({
    store, audit, providers, policy: () => policy.current, exchanger, recheck,
    issue: issueDepsFrom(config, { keys, audit, clock, generations: revocations }),
    blocks: revocations, clock, log, defaultMinimumSeconds: c.minimum_seconds,
  })
  const vaultUrl = c.vault.enabled ? (c.vault.public_url ?? `https://localhost:${c.vault.port}`).replace(/\/$/, '') : undefined
  const service = new CredentialService({
    store, cipher, verifier: iam.verifier, discovery: iam.discovery, policy: () => policy.current, providers,
    blocks: revocations, jobTokens, clock, log,
    brokerUrl: (c.broker_url ?? config.issuer).replace(/\/$/, ''),
    ...(vaultUrl ? { vaultUrl } : {}),
    maxPerUser: c.max_per_user,
    ...(parts.limits ? { limits: parts.limits } : {}),
  })
  const credd: CreddAuthDeps = { idtokenKey: () => keys.idtoken, trustDomain: config.trust_domain, revocations, clock }
  return { service, jobTokens, credd, ...(vaultUrl ? { vaultUrl } : {}), close: () => refreshTokens.close(), unstoredRefreshTokens: () => refreshTokens.unstored() }
}
