import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { AuditEvent } from '../audit/audit_log.ts'
import { classifyIamFailure, TRANSPORT_CAUSES } from '../iam/iam_failure.ts'
import type { Clock } from '../lib/clock.ts'
import type { Policy } from '../policy/compile.ts'
import { REVOCATION_KINDS } from '../revocation/revocation.ts'
import type { CommitStats } from '../storage/group_commit.ts'
import { LabelBounds, NONE, OTHER, STORE_UNAVAILABLE } from './label_bounds.ts'
import type { BrokerObserver, IamCall } from './observer.ts'

/** What a scrape reads on demand (never per request): each is optional, a missing one leaves its series out. */
export interface MetricsSources {
  /** The audit store's group-commit counters (for the writes waiting). */
  commits?: () => CommitStats
  /** Subscribes to the size of each committed audit batch (BrokerStore.observeBatches): one step per transaction. */
  batches?: (listener: (items: number) => void) => void
  /**
   * Revocations in force by kind, and when they were read from the store (epoch seconds): the broker's
   * in-memory list (RevocationService.inForce), never a store read.
   */
  revocations?: () => { byKind: ReadonlyMap<string, number>; readAt: number }
  /** When each signing key was created (epoch seconds); undefined when unknown. */
  keys?: () => ReadonlyArray<{ key: 'idtoken' | 'scitoken'; created: number | undefined }>
  /** Live pilots (an unexpired token this process issued or renewed), by site. */
  livePilots?: (now: number) => ReadonlyMap<string, number>
  /** Rotated IAM refresh tokens the store has not taken yet: held in memory, and of those kept on disk. */
  unstoredRefreshTokens?: () => { memory: number; disk: number }
}

export interface BrokerMetricsOptions {
  clock: Clock
  /** The policy in force: roles and sites it defines are the only label values besides "other" and "none". */
  policy: () => Policy
  /** prom-client's default process metrics (CPU, memory, event loop lag, GC). */
  process?: boolean
  /** Days after creation each key is due for rotation; 0 or absent: no schedule. */
  keyRotationDays?: { idtoken?: number; scitoken?: number }
  sources?: MetricsSources
  /** credentials.vault.enabled: the Vault-compatible listener runs, and its refusals are counted. */
  vaultListener?: boolean
}

/**
 * Why the Vault-compatible listener answered without a token: a fixed vocabulary, a metric label.
 * unknown_token: no Vault token, or one no credential (or another credential) holds; refused: a known token
 * whose read the broker refused (revoked credential, policy; also a token.denied record); address_limit:
 * rate_limits.address; bad_request: the query; method_not_allowed: anything but GET on the read path;
 * store_unavailable: a 503 for a store outage; unavailable: any other 503 (IAM out of reach, the audit queue full, a credential
 * that changed while its refresh token rotated, the sealing key changed); not_found: a path not served (404);
 * server_error: a fault (500).
 */
export const VAULT_REFUSALS = ['unknown_token', 'refused', 'address_limit', 'bad_request', 'method_not_allowed', 'store_unavailable', 'unavailable', 'not_found', 'server_error'] as const
export type VaultRefusal = typeof VAULT_REFUSALS[number]

/** What SIGHUP and the file watches reload: a fixed vocabulary, a metric label. */
const RELOADED = ['policy', 'keys', 'tls'] as const
export type Reloaded = typeof RELOADED[number]

// Seconds. The exchange takes well under a millisecond of CPU; the tail is the audit commit and IAM.
const REQUEST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
// Records per transaction: 1 at low load, up to audit.group_commit.max_batch (default 1000) under load.
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
const IAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/**
 * The broker's Prometheus metrics, in a registry of their own: one per broker (and per test), never
 * prom-client's global default registry, so two brokers in one process cannot mix their counts.
 * Hot-path updates are a counter or histogram step on label values from LabelBounds; everything else
 * (the write queue, keys, pilots, revocations) is read at scrape time, from memory: no scrape waits on a store. Names and labels: docs/metrics.md.
 */
export class BrokerMetrics implements BrokerObserver {
  readonly registry = new Registry()
  readonly #labels: LabelBounds
  readonly #clock: Clock
  readonly #issued: Counter<'role' | 'kind' | 'site'>
  readonly #renewed: Counter<'role' | 'site'>
  readonly #denied: Counter<'role' | 'kind' | 'site' | 'reason'>
  readonly #reuse: Counter<'site' | 'outcome'>
  readonly #tokenSeconds: Histogram<'status'>
  readonly #iamSeconds: Histogram<'call'>
  readonly #iamErrors: Counter<'call' | 'cause'>
  readonly #auditSeconds: Histogram
  readonly #auditFailures: Counter
  readonly #reloads: Counter<'what' | 'outcome'>
  readonly #limitFallbacks: Counter
  readonly #vaultRefusals: Counter<'reason'> | undefined
  /** Epoch seconds of each site's last committed renewal (bounded: sites from the policy, plus "other"). */
  readonly #lastRenewal = new Map<string, number>()

  constructor(options: BrokerMetricsOptions) {
    this.#labels = new LabelBounds(options.policy)
    this.#clock = options.clock
    const registers = [this.registry]
    const sources = options.sources ?? {}
    const labels = this.#labels
    const clock = this.#clock

    this.#issued = new Counter({
      name: 'ctb_tokens_issued_total', help: 'Tokens issued (audit record committed), by role, token kind and policy-bound site.',
      labelNames: ['role', 'kind', 'site'], registers,
    })
    this.#renewed = new Counter({
      name: 'ctb_tokens_renewed_total', help: 'Pilot tokens renewed (audit record committed), by role and site.',
      labelNames: ['role', 'site'], registers,
    })
    this.#denied = new Counter({
      name: 'ctb_tokens_denied_total',
      help: 'Token requests refused, by role and token kind asked for (policy roles only), bound site and OAuth error code (store_unavailable: a 503 for an audit store outage).',
      labelNames: ['role', 'kind', 'site', 'reason'], registers,
    })
    this.#reuse = new Counter({
      name: 'ctb_pilot_token_reuse_total',
      help: 'Renewed pilot tokens presented again, by policy-bound site and outcome: retried (a lost answer, renewed) or revoked (refused, pilot identity revoked).',
      labelNames: ['site', 'outcome'], registers,
    })
    this.#tokenSeconds = new Histogram({
      name: 'ctb_token_request_duration_seconds', help: 'POST /token from the start of the exchange to its answer, by HTTP status.',
      labelNames: ['status'], buckets: REQUEST_BUCKETS, registers,
    })
    this.#iamSeconds = new Histogram({
      name: 'ctb_iam_request_duration_seconds', help: 'HTTP requests to IAM, by endpoint.',
      labelNames: ['call'], buckets: IAM_BUCKETS, registers,
    })
    this.#iamErrors = new Counter({
      name: 'ctb_iam_errors_total', help: 'HTTP requests to IAM that failed, by endpoint and cause (dns, tls, refused, timeout, http_5xx, other).',
      labelNames: ['call', 'cause'], registers,
    })
    this.#auditSeconds = new Histogram({
      name: 'ctb_audit_commit_duration_seconds', help: 'Wait for an issuance or refusal record to commit (group commit included).',
      buckets: REQUEST_BUCKETS, registers,
    })
    this.#auditFailures = new Counter({ name: 'ctb_audit_commit_failures_total', help: 'Issuance or refusal records the audit store refused (no token left).', registers })
    // A refused reload leaves the broker serving what is no longer on disk: its log line is easy to miss,
    // a counter can be alerted on. Both outcomes start at 0 so that increase() sees the first refusal.
    this.#reloads = new Counter({
      name: 'ctb_reloads_total', help: 'Reloads of policies, signing keys and the TLS certificate (SIGHUP or a file watch), by what and outcome (applied, refused: the one in force kept).',
      labelNames: ['what', 'outcome'], registers,
    })
    for (const what of RELOADED) for (const outcome of ['applied', 'refused']) this.#reloads.inc({ what, outcome }, 0)
    // While the shared store fails, limits hold per replica only; the log says so once a minute at most.
    this.#limitFallbacks = new Counter({
      name: 'ctb_rate_limit_store_fallbacks_total',
      help: 'Rate-limit counts the PostgreSQL store failed to take (error or rate_limits.postgres.timeout_ms), taken in this replica\'s memory instead.',
      registers,
    })
    // Not ctb_tokens_denied_total, whose reason is the OAuth code POST /token answered: these answers are
    // Vault's, and most have no audit record to take a role or site from. Every reason starts at 0.
    this.#vaultRefusals = options.vaultListener
      ? new Counter({
        name: 'ctb_vault_refusals_total',
        help: 'Reads the Vault-compatible listener answered without a token, by reason (unknown_token, refused, address_limit, bad_request, method_not_allowed, store_unavailable, unavailable, not_found, server_error).',
        labelNames: ['reason'], registers,
      })
      : undefined
    for (const reason of VAULT_REFUSALS) this.#vaultRefusals?.inc({ reason }, 0)

    if (sources.batches) {
      const size = new Histogram({
        name: 'ctb_audit_commit_batch_size', help: 'Records per committed audit transaction (group commit), every record type.',
        buckets: BATCH_BUCKETS, registers,
      })
      sources.batches((items) => size.observe(items))
    }
    if (sources.commits) {
      const commits = sources.commits
      new Gauge({ name: 'ctb_audit_pending_writes', help: 'Audit records waiting for a commit.', registers, collect() { this.set(commits().pending) } })
    }
    if (sources.revocations) {
      const inForce = sources.revocations
      // From memory, not the store: a scrape that read the store waited on an outage (and, on a PostgreSQL
      // server that stopped answering, held a pool connection up to query_timeout_seconds after giving up).
      // What it reports is what the broker enforces, as of the last refresh; the age says how old that is.
      new Gauge({
        name: 'ctb_revocations_active', help: 'Revocations this broker enforces, by kind (as last read from the store).', labelNames: ['kind'], registers,
        collect() {
          this.reset()
          const counts = new Map<string, number>(REVOCATION_KINDS.map((k) => [k, 0]))
          for (const [kind, n] of inForce().byKind) {
            const k = counts.has(kind) ? kind : OTHER
            counts.set(k, (counts.get(k) ?? 0) + n)
          }
          for (const [kind, n] of counts) this.set({ kind }, n)
        },
      })
      new Gauge({
        name: 'ctb_revocations_read_age_seconds', help: 'Seconds since this broker last read the revocations from the audit store (every revocation.refresh_seconds while it answers).', registers,
        collect() { this.set(clock.now() - inForce().readAt) },
      })
    }
    if (sources.keys) {
      const keys = sources.keys
      const rotation = options.keyRotationDays ?? {}
      new Gauge({
        name: 'ctb_signing_key_age_seconds', help: 'Age of the signing key in force, by key (idtoken: the HTCondor key file; scitoken: the active JWT key).',
        labelNames: ['key'], registers,
        collect() {
          this.reset()
          for (const k of keys()) if (k.created !== undefined) this.set({ key: k.key }, clock.now() - k.created)
        },
      })
      new Gauge({
        name: 'ctb_signing_key_rotation_due_seconds', help: 'Time left until the key in force is due for rotation (metrics.key_rotation_days); negative when overdue.',
        labelNames: ['key'], registers,
        collect() {
          this.reset()
          for (const k of keys()) {
            const days = rotation[k.key] ?? 0
            if (days > 0 && k.created !== undefined) this.set({ key: k.key }, k.created + days * 86400 - clock.now())
          }
        },
      })
    }
    if (sources.livePilots) {
      const live = sources.livePilots
      new Gauge({
        name: 'ctb_pilots_live', help: 'Pilots holding an unexpired token this broker process issued or renewed, by site.',
        labelNames: ['site'], registers,
        collect() {
          this.reset()
          const counts = new Map<string, number>()
          for (const [site, n] of live(clock.now())) {
            const s = labels.site(site)
            counts.set(s, (counts.get(s) ?? 0) + n)
          }
          for (const [site, n] of counts) this.set({ site }, n)
        },
      })
    }
    if (sources.unstoredRefreshTokens) {
      const unstored = sources.unstoredRefreshTokens
      new Gauge({
        name: 'ctb_refresh_tokens_unstored',
        help: 'Rotated IAM refresh tokens the store has not taken yet (IAM has retired the stored ones): held in memory, and of those also kept on disk for a restart.',
        labelNames: ['copy'], registers,
        collect() {
          const n = unstored()
          this.set({ copy: 'memory' }, n.memory)
          this.set({ copy: 'disk' }, n.disk)
        },
      })
    }
    const lastRenewal = this.#lastRenewal
    new Gauge({
      name: 'ctb_pilot_seconds_since_last_renewal', help: 'Seconds since the last pilot renewal this broker process committed, by site.',
      labelNames: ['site'], registers,
      collect() {
        this.reset()
        const now = clock.now()
        for (const [site, at] of lastRenewal) {
          // A site a reload removed renews no more: its series would climb for ever and fire the renewal
          // alert, so it goes (with its entry) rather than wait for a restart.
          if (site !== OTHER && site !== NONE && labels.site(site) !== site) lastRenewal.delete(site)
          else this.set({ site }, now - at)
        }
      },
    })
    if (options.process ?? true) collectDefaultMetrics({ register: this.registry })
  }

  audited(event: AuditEvent, committed: boolean, seconds: number): void {
    const l = this.#labels
    if (committed) this.#auditSeconds.observe(seconds)
    else this.#auditFailures.inc()
    switch (event.type) {
      case 'token.issued':
        if (committed) this.#issued.inc({ role: l.role(event.role), kind: l.kind(event.tokenKind), site: l.site(event.site) })
        break
      case 'token.renewed':
        if (committed) {
          const site = l.site(event.site)
          this.#renewed.inc({ role: l.role(event.role), site })
          this.#lastRenewal.set(site, event.time)
          // A retry names the successor it retired (storage/pilot_renewals.ts).
          if (event.detail?.supersedes !== undefined) this.#reuse.inc({ site, outcome: 'retried' })
        }
        break
      case 'token.denied':
        // Counted whether or not its record committed: the refusal stands either way.
        this.#denied.inc({ role: l.role(event.role), kind: l.kind(event.tokenKind), site: l.site(event.site), reason: l.reason(event.reason) })
        if (committed && event.detail?.reuse !== undefined) this.#reuse.inc({ site: l.site(event.site), outcome: 'revoked' })
        break
    }
  }

  refused(error: string): void {
    const l = this.#labels
    this.#denied.inc({ role: l.role(undefined), kind: l.kind(undefined), site: l.site(undefined), reason: l.reason(error) })
  }

  refusedForStoreOutage(): void {
    // No record to take the role, kind and site from: the refusal is counted as one with nobody to name,
    // under a reason of its own, as its OAuth code (temporarily_unavailable) also answers IAM outages.
    this.#denied.inc({ role: NONE, kind: NONE, site: NONE, reason: STORE_UNAVAILABLE })
  }

  tokenRequest(status: number, seconds: number): void {
    this.#tokenSeconds.observe({ status: String(status) }, seconds)
  }

  iamCall(call: IamCall, seconds: number, outcome: { status: number } | { error: unknown }): void {
    this.#iamSeconds.observe({ call }, seconds)
    if ('error' in outcome) {
      const cause = classifyIamFailure(outcome.error).cause
      // IAM failure causes kept as they are (iam_failure.ts); any other code is "other".
      this.#iamErrors.inc({ call, cause: TRANSPORT_CAUSES.has(cause) ? cause : OTHER })
    } else if (outcome.status >= 500) {
      this.#iamErrors.inc({ call, cause: 'http_5xx' })
    }
  }

  /** A reload of `what` was applied, or refused with the one in force kept. */
  reloaded(what: Reloaded, applied: boolean): void {
    this.#reloads.inc({ what, outcome: applied ? 'applied' : 'refused' })
  }

  /** One rate-limit count taken in this replica's memory because the shared store failed or was slow. */
  rateLimitStoreFallback(): void {
    this.#limitFallbacks.inc()
  }

  /** One read the Vault-compatible listener answered without a token. */
  vaultRefused(reason: VaultRefusal): void {
    this.#vaultRefusals?.inc({ reason })
  }

  /** The page for GET /metrics: the Prometheus text format and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}
