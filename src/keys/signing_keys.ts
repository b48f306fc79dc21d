import type { Config } from '../config.ts'
import type { IdTokenKey } from '../issuance/idtoken.ts'
import type { AsymmetricKey } from '../issuance/scitoken.ts'
import type { PublicJwk } from './jwk.ts'
import type { HeldPublication } from './held_publications.ts'
import { readHeldPublications } from './held_publications.ts'
import { isPreparedEntry, KeyStore } from './key_store.ts'

/** The keys the service signs with, prepared once at start-up. */
export interface SigningKeys {
  idtoken: IdTokenKey
  scitoken: AsymmetricKey
  /** Active plus retired-but-still-needed public keys. */
  jwks: PublicJwk[]
  /**
   * Public keys in `jwks` that the keyring no longer publishes but this broker signed with until a reload
   * retired them late (reload_keys.ts): each stays until `until`, when the last token it signed expires,
   * restarts included (held_publications.ts).
   */
  held?: HeldPublication[]
}

export interface KeyInitReport {
  condorKeyCreated?: string
  jwtKeyCreated?: string
  /** kid of the next SciToken key prepared now (a new data directory, or a keyring from before next keys). */
  nextJwtKeyCreated?: string
  /** Why no next key could be prepared (a read-only key directory); the keys in force still sign. */
  nextJwtKeyError?: string
}

/**
 * Creates any missing key (as HTCondor's collector creates POOL on first start), then loads them all.
 * Existing keys are never overwritten. A next SciToken key is prepared too, so the first `keys rotate`
 * signs with a kid verifiers have fetched already (scitokens-cpp refuses an unknown kid until its 600 s
 * refresh); failing to write it only loses that head start, so it does not stop the broker.
 */
export function ensureAndLoadKeys(
  config: Config, now: number,
  options: { onCondorKeyCreated?: (store: KeyStore, name: string) => void } = {},
): { keys: SigningKeys; report: KeyInitReport; store: KeyStore } {
  const store = new KeyStore(`${config.data_dir}/keys`)
  const report: KeyInitReport = {}
  if (!store.hasCondorKey(config.idtoken.key)) {
    report.condorKeyCreated = store.createCondorKey(config.idtoken.key)
    // At once, before anything below can fail: a key left unmarked by a failed first start would be one
    // development mode made and then refuses.
    options.onCondorKeyCreated?.(store, config.idtoken.key)
  }
  const jwt = store.ensureJwtKey(config.scitoken.alg, now)
  if (jwt.created) report.jwtKeyCreated = jwt.entry.kid
  try {
    const hadNext = store.readKeyring().some(isPreparedEntry)
    const next = store.prepareNextJwtKey(config.scitoken.alg, now)
    if (!hadNext) report.nextJwtKeyCreated = next.kid
  } catch (err) {
    report.nextJwtKeyError = (err as Error).message
  }
  const { active, jwks } = store.loadAsymmetricKeys(now)
  // Keys a reload held past their publish_until stay published across a restart until their last token expires.
  const held = readHeldPublications(store, now, jwks)
  const keys: SigningKeys = { idtoken: store.loadIdTokenKey(config.idtoken.key), scitoken: active, jwks: [...jwks, ...held.map((h) => h.jwk)], ...(held.length > 0 ? { held } : {}) }
  return { keys, report, store }
}
