import type { ReadinessCheck } from './http/routes/health.ts'
import { assertKeysSign } from './issuance/key_self_test.ts'
import type { SigningKeys } from './keys/signing_keys.ts'
import type { Clock } from './lib/clock.ts'
import type { BrokerStore } from './storage/chained_store.ts'

/** After a failed commit, not ready for this long unless a later commit succeeds (then ready at once). */
export const AUDIT_FAILURE_WINDOW_SECONDS = 30
/** Re-run the key self-test at most this often. */
const KEY_SELF_TEST_SECONDS = 60

/**
 * Audit: can an issuance be committed? Not if the write path has stopped (the writer thread died), nor
 * while the last commit failed within the window. The window ends so that a broker taken out of rotation
 * gets traffic again and can prove the store healthy: readiness cannot write a probe record of its own,
 * as that would put noise into the chain. Finally a one-record read checks the store answers at all.
 */
export async function auditReadiness(store: BrokerStore, nowMs: number, windowSeconds = AUDIT_FAILURE_WINDOW_SECONDS): Promise<string> {
  const h = store.writeHealth()
  if (h.stopped !== undefined) return `unavailable: ${h.stopped}`
  if (h.lastFailure && nowMs - h.lastFailure.at < windowSeconds * 1000) return `last commit failed: ${h.lastFailure.message}`
  return store.query({ limit: 1 }).then(() => 'ok', (err: unknown) => `unavailable: ${(err as Error).message}`)
}

/**
 * Keys: the loaded signing keys are there and pass the same sign-then-verify self-test as at start-up.
 * Cached per key set, since the key objects do not change under it.
 */
export function keysReadiness(getKeys: () => SigningKeys, issuers: { trustDomain: string; issuer: string }, clock: Clock): () => string {
  let last: { keys: SigningKeys; at: number; result: string } | undefined
  return () => {
    const keys = getKeys()
    const now = clock.now()
    if (last && last.keys === keys && now - last.at < KEY_SELF_TEST_SECONDS) return last.result
    let result: string
    if (!keys?.idtoken || !keys.scitoken) result = 'no signing key loaded'
    else {
      try {
        assertKeysSign(keys, issuers, now)
        result = 'ok'
      } catch (err) {
        result = (err as Error).message
      }
    }
    last = { keys, at: now, result }
    return result
  }
}

/** The broker's readiness: audit store and keys. IAM is reported beside it, not in it (docs/iam.md). */
export function brokerReadiness(deps: { store: BrokerStore; keys: () => SigningKeys; issuers: { trustDomain: string; issuer: string }; clock: Clock }): ReadinessCheck {
  const keys = keysReadiness(deps.keys, deps.issuers, deps.clock)
  return async () => ({ keys: keys(), audit: await auditReadiness(deps.store, Date.now()) })
}
