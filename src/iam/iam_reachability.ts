import { checkIamIssuer } from './iam_check.ts'
import type { IamDiscovery } from './discovery.ts'
import type { IamFetch } from './iam_fetch.ts'

/** Per issuer: `ok` or the reason for discovery and the JWKS, and when that was found out (epoch seconds). */
export type IamReachabilityReport = Record<string, { discovery: string; jwks: string; checkedAt: number }>

export interface IamReachabilityOptions {
  discovery: IamDiscovery
  fetch: IamFetch
  timeoutSeconds: number
  /** Reuse a result this long, so probes of /readyz cost IAM one discovery and one JWKS fetch per interval. */
  cacheSeconds: number
  /** Longest a caller waits for a check in flight before getting the previous result (or `checking`). */
  maxWaitMs: number
  now?: () => number
}

/**
 * Whether each trusted IAM answers discovery and its JWKS right now, for /readyz. Cached, shared by
 * concurrent callers and bounded in waiting: a readiness probe must answer quickly even while IAM hangs.
 */
export class IamReachability {
  readonly #o: IamReachabilityOptions
  #report: IamReachabilityReport | undefined
  #checkedAt = -Infinity
  #running: Promise<IamReachabilityReport> | undefined

  constructor(options: IamReachabilityOptions) {
    this.#o = options
  }

  async report(): Promise<IamReachabilityReport> {
    const now = (this.#o.now ?? Date.now)()
    if (this.#report && now - this.#checkedAt < this.#o.cacheSeconds * 1000) return this.#report
    this.#running ??= this.#check().finally(() => { this.#running = undefined })
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), this.#o.maxWaitMs) })
    const fresh = await Promise.race([this.#running, late])
    clearTimeout(timer)
    return fresh ?? this.#report ?? Object.fromEntries(this.#o.discovery.issuers.map((i) => [i.config.issuer, { discovery: 'checking', jwks: 'checking', checkedAt: 0 }]))
  }

  async #check(): Promise<IamReachabilityReport> {
    const report: IamReachabilityReport = {}
    await Promise.all(this.#o.discovery.issuers.map(async (issuer) => {
      const steps = await checkIamIssuer(issuer, this.#o, { introspection: false, open: true })
      const result = (name: string) => { const s = steps.find((x) => x.step === name); return s?.ok ? 'ok' : (s?.reason ?? 'unknown') }
      report[issuer.config.issuer] = { discovery: result('discovery'), jwks: result('jwks'), checkedAt: Math.floor((this.#o.now ?? Date.now)() / 1000) }
    }))
    this.#report = report
    this.#checkedAt = (this.#o.now ?? Date.now)()
    return report
  }
}
