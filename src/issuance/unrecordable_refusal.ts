import { AuditStoreUnavailable, type BrokerError } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'

/**
 * A refusal that cannot be put on record: the audit store's own outage (AuditStoreUnavailable, 503). Its
 * record would go to the very store that has just failed to commit, so trying would only make the client
 * wait a second busy or connect timeout for a write that fails the same way, and take a queue slot from
 * the issuances that succeed once the store is back. The log line is its trace instead (with the request
 * id and the caller); the metrics count it as a denial (reason store_unavailable), an audit commit failure and a 503. True when it logged the
 * refusal (the caller records nothing), false for every other refusal, which the caller records as usual.
 */
export function unrecordableRefusal(
  err: BrokerError, ctx: { requestId: string; clientAddress?: string | undefined }, log: Logger, caller: { iss: string; sub: string },
): boolean {
  if (!(err instanceof AuditStoreUnavailable)) return false
  // Recorded before the outage struck (a reuse's refusal, then its revocation): nothing to add.
  if (err.refusalRecorded) return true
  log.error('refused for an audit store outage; the refusal is not recorded, the store being what failed', {
    err: err.cause, requestId: ctx.requestId, error: err.error, caller: { iss: caller.iss, sub: caller.sub },
    ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
  })
  err.logged = true
  return true
}
