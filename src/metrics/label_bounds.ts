import type { OAuthErrorCode } from '../errors.ts'
import type { Policy } from '../policy/compile.ts'
import { revocationLabels, type RevocationLabels } from '../policy/revocation_labels.ts'

/**
 * Label values must come from a fixed vocabulary or from the policy, never from the caller: each distinct
 * value is a time series kept in memory here and in Prometheus, so a caller who could choose one (a made-up
 * site or role, a `sub`) could grow both without bound. Anything the policy does not define is "other";
 * nothing at all is "none".
 */
export const OTHER = 'other'
export const NONE = 'none'
/**
 * The `reason` of a POST /token refused 503 for an audit store outage. Not an OAuth code: the code it answers,
 * temporarily_unavailable, is also IAM's outage, and an admin must tell which store to look at.
 */
export const STORE_UNAVAILABLE = 'store_unavailable'

/** Token kinds as audit records name them (the exchange's three and the pilot enrolment credential). */
const KINDS: ReadonlySet<string> = new Set(['idtoken', 'scitoken', 'access_token', 'pilot_enrolment'])

/** The OAuth error codes the broker answers with (src/errors.ts), plus server_error. */
const REASON_LIST = [
  'invalid_request', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type',
  'invalid_scope', 'invalid_target', 'access_denied', 'temporarily_unavailable', 'invalid_token', 'slow_down', 'server_error',
] as const satisfies ReadonlyArray<OAuthErrorCode | 'server_error'>
type NoneLeft<T extends never> = T
/** Fails to compile when errors.ts gains a code this list lacks, so a new refusal never counts as "other". */
export type UnlistedReasons = NoneLeft<Exclude<OAuthErrorCode, (typeof REASON_LIST)[number]>>
const REASONS: ReadonlySet<string> = new Set(REASON_LIST)

/** Maps raw values onto bounded label values, judged against the policy in force (reloads included). */
export class LabelBounds {
  readonly #policy: () => Policy
  // One label set per policy object: a reload swaps the object, so the sets follow it without a hook.
  #seen: { policy: Policy; labels: RevocationLabels } | undefined

  constructor(policy: () => Policy) {
    this.#policy = policy
  }

  #labels(): RevocationLabels {
    const policy = this.#policy()
    if (this.#seen?.policy !== policy) this.#seen = { policy, labels: revocationLabels(policy) }
    return this.#seen.labels
  }

  role(v: string | undefined): string {
    return v === undefined ? NONE : this.#labels().roles.has(v) ? v : OTHER
  }

  site(v: string | undefined): string {
    return v === undefined ? NONE : this.#labels().sites.has(v) ? v : OTHER
  }

  kind(v: string | undefined): string {
    return v === undefined ? NONE : KINDS.has(v) ? v : OTHER
  }

  /** An OAuth error code, or the code that opens an audit reason (`invalid_target: …`). */
  reason(v: string | undefined): string {
    if (v === undefined) return NONE
    const colon = v.indexOf(':')
    const code = colon < 0 ? v : v.slice(0, colon)
    return REASONS.has(code) ? code : OTHER
  }
}
