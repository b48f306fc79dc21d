import type { Config } from '../config.ts'
import type { IdTokenKey } from '../issuance/idtoken.ts'
import type { AsymmetricKey } from '../issuance/scitoken.ts'
import type { PublicJwk } from './jwk.ts'
import { KeyStore } from './key_store.ts'

/** The keys the service signs with, prepared once at start-up. */
export interface SigningKeys {
  idtoken: IdTokenKey
  scitoken: AsymmetricKey
  /** Active plus retired-but-still-needed public keys. */
  jwks: PublicJwk[]
}

export interface KeyInitReport {
  condorKeyCreated?: string
  jwtKeyCreated?: string
}

/**
 * Creates any missing key (as HTCondor's collector creates POOL on first start), then loads them all.
 * Existing keys are never overwritten.
 */
export function ensureAndLoadKeys(config: Config, now: number): { keys: SigningKeys; report: KeyInitReport; store: KeyStore } {
  const store = new KeyStore(`${config.data_dir}/keys`)
  const report: KeyInitReport = {}
  if (!store.hasCondorKey(config.idtoken.key)) report.condorKeyCreated = store.createCondorKey(config.idtoken.key)
  const jwt = store.ensureJwtKey(config.scitoken.alg, now)
  if (jwt.created) report.jwtKeyCreated = jwt.entry.kid
  const { active, jwks } = store.loadAsymmetricKeys(now)
  return { keys: { idtoken: store.loadIdTokenKey(config.idtoken.key), scitoken: active, jwks }, report, store }
}
