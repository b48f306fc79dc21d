import type { AuditEvent, AuditLog } from '../audit/audit_log.ts'
import type { RefusalTally } from '../audit/refusal_tally.ts'
import { AuditStoreUnavailable, BrokerError } from '../errors.ts'
import type { IamFetch } from '../iam/iam_fetch.ts'
import type { BrokerStore } from '../storage/chained_store.ts'
import { recordOf } from '../storage/pilot_renewals.ts'
import type { BrokerObserver, IamCall } from './observer.ts'

/**
 * Wrappers that report to a BrokerObserver around the parts the token pipeline already calls. The
 * pipeline's own code does not change: what it records in the audit log is what the metrics count, so
 * an issuance is counted exactly when its record committed (the moment the token may leave).
 */

/** The audit log, reporting every record it settles. */
export function observeAudit(audit: AuditLog, o: BrokerObserver): AuditLog {
  return { record: (event) => timed(audit.record(event), o, () => event) }
}

/** What the pilot pipeline writes through: records, redemptions, and the lookups of pilot tokens. */
type PilotStore = Pick<BrokerStore, 'record' | 'redeemPilotSlot' | 'renewPilotToken' | 'query'>

/**
 * The pilot store: records as observeAudit, and a redemption or renewal as the record it committed (issued
 * or refused; a renewal's as completed by the store, so a retry and a reuse are told apart).
 */
export function observePilotStore(store: PilotStore, o: BrokerObserver): PilotStore {
  return {
    record: (event) => timed(store.record(event), o, () => event),
    redeemPilotSlot: (credential, limit, issued, refused) =>
      timed(store.redeemPilotSlot(credential, limit, issued, refused), o, (r) => (r === undefined || r.redeemed ? issued : refused)),
    renewPilotToken: (renewal, renewed, refused, reasons) =>
      timed(store.renewPilotToken(renewal, renewed, refused, reasons), o, (r) => (r === undefined ? renewed : recordOf(renewed, refused, reasons, renewal.replaces, r))),
    query: (q) => store.query(q),
  }
}

/** Settles `p` as it would, reporting the record it stood for and how long its commit took. */
function timed<T>(p: Promise<T>, o: BrokerObserver, eventOf: (result: T | undefined) => AuditEvent): Promise<T> {
  const start = performance.now()
  return p.then(
    (r) => { o.audited(eventOf(r), true, (performance.now() - start) / 1000); return r },
    (err: unknown) => { o.audited(eventOf(undefined), false, (performance.now() - start) / 1000); throw err },
  )
}

/** The refusal tally, reporting each refusal it counts. */
export function observeRefusals(refusals: Pick<RefusalTally, 'note'>, o: BrokerObserver): Pick<RefusalTally, 'note'> {
  return {
    note(error, clientAddress) {
      o.refused(error)
      refusals.note(error, clientAddress)
    },
  }
}

/**
 * POST /token's exchange, timed from its start to its answer (or error), by the status it answers with.
 * Generic over the exchange's arguments so this module needs no HTTP type.
 */
export function observeExchange<A extends unknown[], R>(exchange: (...args: A) => Promise<R>, o: BrokerObserver): (...args: A) => Promise<R> {
  return async (...args) => {
    const start = performance.now()
    try {
      const res = await exchange(...args)
      o.tokenRequest(200, (performance.now() - start) / 1000)
      return res
    } catch (err) {
      // Every answer of POST /token passes here, so an outage refusal is counted once, whichever store call
      // of the pipeline met the outage (a commit, a pilot lookup). Not a reuse's refusal whose revocation met
      // it: that refusal committed, and was counted from its record.
      if (err instanceof AuditStoreUnavailable && !err.refusalRecorded) o.refusedForStoreOutage()
      o.tokenRequest(err instanceof BrokerError ? err.status : 500, (performance.now() - start) / 1000)
      throw err
    }
  }
}

/** The IAM HTTP client, reporting each call's duration and outcome. */
export function observeIamFetch(fetch: IamFetch, o: BrokerObserver): IamFetch {
  return async (url, init) => {
    const call = iamCallOf(url, init)
    const start = performance.now()
    try {
      const res = await fetch(url, init)
      o.iamCall(call, (performance.now() - start) / 1000, { status: res.status })
      return res
    } catch (err) {
      o.iamCall(call, (performance.now() - start) / 1000, { error: err })
      throw err
    }
  }
}

/**
 * Which IAM endpoint a request is for, from what the request shows: discovery by its well-known path, a
 * POST with a grant_type is the token endpoint, a POST with a `token` is introspection, other GETs are
 * the JWKS (the only other document the broker reads).
 */
export function iamCallOf(url: string, init: RequestInit): IamCall {
  const method = (init.method ?? 'GET').toUpperCase()
  if (method === 'GET') return url.includes('/.well-known/') ? 'discovery' : 'jwks'
  if (method !== 'POST') return 'other'
  const body = init.body
  const form = body instanceof URLSearchParams ? body : typeof body === 'string' ? new URLSearchParams(body) : undefined
  if (form?.has('grant_type')) return 'token'
  if (form?.has('token')) return 'introspection'
  return 'other'
}
