import { allowInsecureRequests, customFetch, discovery, type Configuration } from 'openid-client'
import { OperatorError, TemporarilyUnavailable } from '../errors.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import { loadIamClientCredentials, type IamClientCredentials } from './client_auth.ts'
import type { IamConfig, TrustedIssuerConfig } from './iam_config.ts'
import { mapIamError } from './iam_errors.ts'
import type { IamFetch } from './iam_fetch.ts'

/** One trusted IAM: its configuration and the broker's credentials there. */
export interface TrustedIssuer {
  readonly config: TrustedIssuerConfig
  readonly credentials: IamClientCredentials
  /** The discovery document URL actually used. */
  readonly discoveryUrl: string
}

interface Entry {
  issuer: TrustedIssuer
  current?: { configuration: Configuration; fetchedAt: number }
  pending?: Promise<Configuration>
  failedAt?: number
}

/**
 * The default discovery URL. Built by string concatenation, not `new URL()` resolution, so a path-based
 * issuer (`https://h/realm`) keeps its path (RFC 8414 §3 / OIDC Discovery §4).
 */
export function defaultDiscoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`
}

/**
 * Per-issuer OpenID discovery through openid-client, cached. The discovery URL is a separate setting
 * from the exact issuer string (docs/iam-and-wlcg.md §1.2): we always hand openid-client the full
 * `.well-known` URL and then compare the discovered `issuer` ourselves, byte for byte, because
 * openid-client's own check normalises through `new URL()` (a host-only issuer without its slash would
 * pass). One known IAM quirk is accepted: IAM's discovery document always ends `issuer` with `/` even
 * when tokens carry `IAM_ISSUER` without it; token `iss` is still compared exactly elsewhere.
 *
 * A plain Map instead of node-cache: there are a handful of issuers, and we need stale-on-error plus a
 * retry back-off, which node-cache's expiry would throw away.
 */
export class IamDiscovery {
  readonly #entries = new Map<string, Entry>()
  readonly #iam: IamConfig
  readonly #fetch: IamFetch
  readonly #clock: Clock
  readonly #log: Logger

  private constructor(iam: IamConfig, issuers: TrustedIssuer[], deps: { fetch: IamFetch; clock: Clock; log: Logger }) {
    this.#iam = iam
    this.#fetch = deps.fetch
    this.#clock = deps.clock
    this.#log = deps.log
    for (const issuer of issuers) this.#entries.set(issuer.config.issuer, { issuer })
  }

  /**
   * Loads client credentials for every trusted issuer (fails fast on a bad secret or key file); does not
   * contact IAM, so the broker starts while IAM is down.
   */
  static async create(iam: IamConfig, deps: { fetch: IamFetch; clock: Clock; log: Logger; readFile?: (path: string) => Buffer }): Promise<IamDiscovery> {
    const issuers: TrustedIssuer[] = []
    for (const config of iam.issuers) {
      const credentials = await loadIamClientCredentials(config.client, deps.readFile)
      issuers.push({ config, credentials, discoveryUrl: config.discovery_url ?? defaultDiscoveryUrl(config.issuer) })
    }
    return new IamDiscovery(iam, issuers, deps)
  }

  /** Exact-string lookup of a trusted issuer; `undefined` for anything else (no normalisation, §1.2). */
  issuer(iss: string): TrustedIssuer | undefined {
    return this.#entries.get(iss)?.issuer
  }

  get issuers(): TrustedIssuer[] {
    return [...this.#entries.values()].map((e) => e.issuer)
  }

  /**
   * The openid-client Configuration for a trusted issuer: server metadata plus the broker's client auth,
   * the injected fetch and the timeout. Throws TemporarilyUnavailable when IAM cannot be reached and no
   * earlier metadata is at hand, and TypeError for an issuer that is not configured (a programming error).
   */
  async configuration(iss: string): Promise<Configuration> {
    const entry = this.#entries.get(iss)
    if (!entry) throw new TypeError('configuration() called for an untrusted issuer')
    const now = this.#clock.now()
    if (entry.current && now - entry.current.fetchedAt < this.#iam.discovery_cache_seconds) return entry.current.configuration
    if (entry.pending) return entry.current?.configuration ?? entry.pending
    if (entry.failedAt !== undefined && now - entry.failedAt < this.#iam.discovery_retry_seconds) {
      if (entry.current) return entry.current.configuration
      throw new TemporarilyUnavailable('IAM discovery failed recently; try again later')
    }
    const pending = this.#discover(entry.issuer)
      .then((configuration) => {
        entry.current = { configuration, fetchedAt: this.#clock.now() }
        entry.failedAt = undefined
        return configuration
      }, (err: unknown) => {
        entry.failedAt = this.#clock.now()
        throw err
      })
      .finally(() => { entry.pending = undefined })
    entry.pending = pending
    if (entry.current) {
      // Stale metadata keeps serving while the refresh runs; a failed refresh is only logged.
      pending.catch(() => {})
      return entry.current.configuration
    }
    return pending
  }

  /**
   * Runs discovery for a trusted issuer now, bypassing and leaving alone the cache: for diagnostics
   * (`iam check`, readiness), which must see IAM as it is, not as it was. Throws as configuration() does.
   */
  async probe(iss: string): Promise<Configuration> {
    const entry = this.#entries.get(iss)
    if (!entry) throw new TypeError('probe() called for an untrusted issuer')
    return this.#discover(entry.issuer)
  }

  async #discover(issuer: TrustedIssuer): Promise<Configuration> {
    const { config, credentials, discoveryUrl } = issuer
    let configuration: Configuration
    try {
      configuration = await discovery(new URL(discoveryUrl), credentials.clientId, undefined, credentials.auth, {
        [customFetch]: this.#fetch,
        timeout: this.#iam.timeout_seconds,
        // Only an issuer the operator marked as development may use http:// (e.g. the loopback dev IAM).
        ...(config.development ? { execute: [allowInsecureRequests] } : {}),
      })
    } catch (err) {
      throw mapIamError(err, 'discovery', config.issuer, this.#log, discoveryUrl)
    }
    const discovered = configuration.serverMetadata().issuer
    if (discovered !== config.issuer && discovered !== `${config.issuer}/`) {
      const problem = new OperatorError('EIAM_ISSUER', `discovery at ${discoveryUrl} names issuer ${JSON.stringify(discovered)}, configured ${JSON.stringify(config.issuer)}`)
      this.#log.error('IAM issuer mismatch; fix iam.issuers[].issuer or discovery_url', { issuer: config.issuer, discovered, discoveryUrl })
      throw new TemporarilyUnavailable('IAM discovery does not match the configured issuer', { cause: problem })
    }
    const jwksUri = configuration.serverMetadata().jwks_uri
    if (!jwksUri || !(jwksUri.startsWith('https://') || (config.development && jwksUri.startsWith('http://')))) {
      this.#log.error('IAM discovery has no usable jwks_uri (https required unless development)', { issuer: config.issuer, jwksUri })
      throw new TemporarilyUnavailable('IAM discovery document has no usable jwks_uri')
    }
    return configuration
  }
}
