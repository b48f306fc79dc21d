import type { ReadinessCheck } from './http/routes/health.ts'
import { assertKeysSign } from './issuance/key_self_test.ts'
import type { SigningKeys } from './keys/signing_keys.ts'
import type { Clock } from './lib/clock.ts'
import type { Logger } from './lib/logger.ts'
import { withinMs } from './lib/within_ms.ts'
import type { BrokerStore } from './storage/chained_store.ts'

/** After a failed commit, not ready for this long unless a later commit succeeds (then ready at once). */
export const AUDIT_FAILURE_WINDOW_SECONDS = 30
/**
 * Longest the one-record read may take. A PostgreSQL server that stopped answering gives no error and the
 * store's own bound (query_timeout_seconds) is 30 s: a probe must answer well before a load balancer's
 * timeout, as the IAM part does (iam_reachability.ts), and say why.
 */
export const AUDIT_READ_MS = 2000
/** Re-run the key self-test at most this often. */
const KEY_SELF_TEST_SECONDS = 60

/** What is wrong with the audit store, in words fixed here, and the store's own message for the log. */
interface AuditVerdict {
  /** The /readyz answer: 'ok' or fixed words. */
  check: string
  /** For the log, with the store's message: what changes it, ignoring the age of a failure. */
  condition?: { msg: string; error: string }
}

/**
 * Audit: can an issuance be committed? Not if the write path has stopped (the writer thread died), nor
 * while the last commit failed within the window. The window ends so that a broker taken out of rotation
 * gets traffic again and can prove the store healthy: readiness cannot write a probe record of its own,
 * as that would put noise into the chain. Finally a one-record read checks the store answers at all.
 * The answer is in fixed words: /readyz is open to a load balancer without auth, and a store's message can
 * name its host, port, user or file. The message goes to the log (auditReadinessCheck).
 */
async function judgeAudit(store: BrokerStore, nowMs: number, windowSeconds: number, readMs: number, read: () => Promise<AuditVerdict> = () => readVerdict(store)): Promise<AuditVerdict> {
  const h = store.writeHealth()
  if (h.stopped !== undefined) {
    const words = 'the audit writer thread has stopped'
    return { check: words, condition: { msg: words, error: h.stopped } }
  }
  if (h.lastFailure && nowMs - h.lastFailure.at < windowSeconds * 1000) {
    const ago = Math.max(0, Math.floor((nowMs - h.lastFailure.at) / 1000))
    return { check: `the last audit commit failed ${ago} s ago`, condition: { msg: 'the last audit commit failed', error: h.lastFailure.message } }
  }
  const late = 'the audit store did not answer in time'
  return (await withinMs(read(), readMs)) ?? { check: late, condition: { msg: late, error: `no answer to a one-record read within ${readMs} ms` } }
}

/** The one-record read, as a verdict; never rejects. */
function readVerdict(store: BrokerStore): Promise<AuditVerdict> {
  return store.query({ limit: 1 }).then((): AuditVerdict => ({ check: 'ok' }), (err: unknown): AuditVerdict => {
    const words = 'the audit store cannot be read'
    return { check: words, condition: { msg: words, error: err instanceof Error ? err.message : String(err) } }
  })
}

/** The audit check's /readyz answer (judgeAudit), without logging. */
export async function auditReadiness(store: BrokerStore, nowMs: number, windowSeconds = AUDIT_FAILURE_WINDOW_SECONDS, readMs = AUDIT_READ_MS): Promise<string> {
  return (await judgeAudit(store, nowMs, windowSeconds, readMs)).check
}

/**
 * The audit check for /readyz, logging the store's message when the condition changes (turns bad, changes
 * cause or message, turns ok): once per change, since a load balancer probes every few seconds. Probes
 * overlap (several load balancers; a query that waits on a failing store), so a verdict is logged only
 * if no probe started after it has been logged already: older news arriving last must not be the last word.
 */
export function auditReadinessCheck(store: BrokerStore, log: Logger, nowMs: () => number, windowSeconds = AUDIT_FAILURE_WINDOW_SECONDS, readMs = AUDIT_READ_MS): () => Promise<string> {
  let logged: string | undefined
  let started = 0
  let newestApplied = 0
  // At most one read in flight: a probe that finds one waits on it rather than start another. A read the
  // probe gave up on still holds its PostgreSQL pool connection until query_timeout_seconds (30 s), so a
  // read per probe, on a server that stopped answering, would take the pool's connections (4 by default)
  // from the token requests one probe at a time. The price: once the store answers again, readiness
  // follows when that read settles (at once on a thawed server, at worst query_timeout_seconds later).
  let reading: Promise<AuditVerdict> | undefined
  const read = () => (reading ??= readVerdict(store).finally(() => { reading = undefined }))
  return async () => {
    const probe = ++started
    const { check, condition } = await judgeAudit(store, nowMs(), windowSeconds, readMs, read)
    if (probe < newestApplied) return check
    newestApplied = probe
    const key = condition ? JSON.stringify(condition) : undefined
    if (key !== logged) {
      if (condition) log.error(`audit not ready: ${condition.msg}`, { error: condition.error })
      else log.info('audit ready again')
      logged = key
    }
    return check
  }
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
export function brokerReadiness(deps: { store: BrokerStore; keys: () => SigningKeys; issuers: { trustDomain: string; issuer: string }; clock: Clock; log: Logger }): ReadinessCheck {
  const keys = keysReadiness(deps.keys, deps.issuers, deps.clock)
  // Date.now(), not the clock: the write health's times are the process's own milliseconds.
  const audit = auditReadinessCheck(deps.store, deps.log, () => Date.now())
  return async () => ({ keys: keys(), audit: await audit() })
}
