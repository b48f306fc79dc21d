/**
 * When the credmon next asks the broker for one credential. Pure, in epoch seconds, so tests drive it
 * with a fake clock.
 */

/** First wait after a failure; doubles per consecutive failure up to BACKOFF_MAX_SECONDS. */
export const BACKOFF_INITIAL_SECONDS = 30
export const BACKOFF_MAX_SECONDS = 600
/** A Retry-After above this is treated as this: a broker bug must not park a job's token for a day. */
export const RETRY_AFTER_CAP_SECONDS = 3600

/**
 * A fresh token obtained at `now` valid for `expiresIn` seconds is refreshed at half its remaining life,
 * the rule HTCondor's OAuth and local credmons apply, so the job's copy (refreshed by the starter every
 * few minutes) never runs out while the broker answers.
 */
export function refreshAt(now: number, expiresIn: number): number {
  return now + Math.max(1, Math.floor(expiresIn / 2))
}

/**
 * The next attempt after `failures` consecutive failures (1 for the first). Exponential with a cap;
 * a Retry-After from the broker is honoured when it asks for longer.
 */
export function retryAt(now: number, failures: number, retryAfterSeconds?: number): number {
  const backoff = Math.min(BACKOFF_INITIAL_SECONDS * 2 ** Math.max(0, failures - 1), BACKOFF_MAX_SECONDS)
  const asked = retryAfterSeconds === undefined ? 0 : Math.min(Math.max(0, retryAfterSeconds), RETRY_AFTER_CAP_SECONDS)
  return now + Math.max(backoff, asked)
}
