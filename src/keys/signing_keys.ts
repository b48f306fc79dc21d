import type { Config } from '../config.ts'
import type { IdTokenKey } from '../issuance/idtoken.ts'
import type { AsymmetricKey } from '../issuance/scitoken.ts'
import type { PublicJwk } from './jwk.ts'
import { readHeldRecord, resolveHolds, sameHolds, writeHeldRecord, type HeldPublication } from './held_publications.ts'
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
  /** kid of the key this broker signed with before it stopped, held in /jwks now that the keyring has dropped it. */
  heldSigningKey?: string
  /** Why a hold could not be made or recorded; a restart before the holds end may drop them. */
  heldRecordError?: string
  /** Why the signing kid could not be recorded, nothing being held (a key directory serve cannot write to). */
  signingRecordError?: string
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
  const held = holdsAtStart(store, active.kid, jwks, now, config.scitoken.max_lifetime, report)
  const keys: SigningKeys = { idtoken: store.loadIdTokenKey(config.idtoken.key), scitoken: active, jwks: [...jwks, ...held.map((h) => h.jwk)], ...(held.length > 0 ? { held } : {}) }
  return { keys, report, store }
}

/**
 * The keys to publish past their keyring publish_until after a restart: those a reload held, until their
 * last token expires, and the key this broker signed with until it stopped when the keyring no longer
 * publishes it (a rotation taken up only now, days late: no watch, no SIGHUP, a replica's jwt/ copied
 * and restarted), whose tokens live up to max_lifetime + 60 s from now. The record is then brought up
 * to date; failing to write it only loses that for the next restart, so it does not stop the broker.
 */
function holdsAtStart(store: KeyStore, activeKid: string, published: PublicJwk[], now: number, maxLifetime: number, report: KeyInitReport): HeldPublication[] {
  const record = readHeldRecord(store.dir)
  const { holds: recorded, dropped } = resolveHolds(store, record.held, now, published)
  if (dropped.length > 0) report.heldRecordError = dropped.join('; ')
  const held = [...recorded]
  const last = record.signing
  // A kid `keys rotate --compromised` unpublished is never held: publishing it is what the thief needs.
  if (last !== undefined && last !== activeKid && !published.some((k) => k.kid === last) && !held.some((h) => h.jwk.kid === last) && !store.compromisedKids().has(last)) {
    // A key file removed on purpose (a compromised key) is let go, as for a recorded hold (held_publications.ts).
    try {
      held.push({ jwk: store.publicJwkOf(last), until: now + maxLifetime + 60 })
      report.heldSigningKey = last
    } catch (err) {
      report.heldRecordError = `${report.heldRecordError ? `${report.heldRecordError}; ` : ''}the key ${last} this broker signed with before it stopped cannot be published: ${(err as Error).message}`
    }
  }
  if (last !== activeKid || !sameHolds(recorded, held) || record.held.length !== recorded.length) {
    try {
      writeHeldRecord(store.dir, activeKid, held)
    } catch (err) {
      // Nothing held: no key is lost, only the signing kid a later late take-up would hold (a warning).
      if (held.length === 0) report.signingRecordError = `cannot record the kid this broker signs with: ${(err as Error).message}`
      else report.heldRecordError = `${report.heldRecordError ? `${report.heldRecordError}; ` : ''}cannot record the keys held in /jwks: ${(err as Error).message}`
    }
  }
  return held
}
