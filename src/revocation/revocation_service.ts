import type { AuditEvent, AuditStore } from '../audit/audit_log.ts'
import { InvalidRequest } from '../errors.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import { buildRevocationExpression, isClassAdSafe } from './condor_expression.ts'
import { INITIAL_GENERATION, REVOCATION_KINDS, type Revocation, type RevocationKind, type RevocationStore } from './revocation.ts'
import { RevocationSnapshot, type RevocationChecker } from './revocation_checker.ts'

export interface RevocationServiceDeps {
  store: RevocationStore & Pick<AuditStore, 'query'>
  clock: Clock
  log: Logger
  /** Longest lifetime of any token the broker issues: after revokedAt + this, a sub/site/role entry matches nothing valid. */
  maxTokenLifetime: number
  /** Re-read revocations this often, so replicas and the CLI see each other's revocations. */
  refreshSeconds: number
}

/** What an admin asks for (HTTP or CLI). */
export interface RevocationRequest {
  kind: RevocationKind
  value: string
  reason?: string
  /** For `jti`: the token's exp if known; otherwise it is looked up in the audit log. */
  exp?: number
}

/** Who revoked, for the audit record. */
export interface RevocationActor {
  principal: string
  requestId?: string
  clientAddress?: string
}

/**
 * Revocation use cases: revoke (audited in the same transaction), list, render for HTCondor, and the
 * in-memory snapshot the issuance hot path reads role generations from and token acceptors check against.
 * A snapshot a few seconds stale can only over-revoke: a token minted with an old generation is already
 * revoked by the newer one, never the other way round.
 */
export class RevocationService implements RevocationChecker {
  readonly #deps: RevocationServiceDeps
  #snapshot: RevocationSnapshot
  #timer: NodeJS.Timeout | undefined

  constructor(deps: RevocationServiceDeps) {
    this.#deps = deps
    this.#snapshot = new RevocationSnapshot([], new Map(), deps.clock.now())
  }

  /** Loads the snapshot; call once before serving. */
  async refresh(): Promise<void> {
    const now = this.#deps.clock.now()
    const [revs, gens] = await Promise.all([this.#deps.store.listRevocations({ activeAt: now }), this.#deps.store.roleGenerations()])
    this.#snapshot = new RevocationSnapshot(revs, gens, now)
  }

  /** Periodic refresh; failures keep the last snapshot and are logged. */
  startAutoRefresh(): void {
    if (this.#timer) return
    this.#timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.#deps.log.warn('revocation refresh failed; using the previous list', { err }))
    }, this.#deps.refreshSeconds * 1000)
    this.#timer.unref()
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** The generation a token issued now for `role` carries (claim ctb_gen). Synchronous: hot path. */
  generationOf(role: string): number {
    return this.#snapshot.generationOf(role, INITIAL_GENERATION)
  }

  isRevoked(claims: object): boolean {
    return this.#snapshot.isRevoked(claims)
  }

  /** Stores a revocation with its audit record (one transaction) and refreshes the snapshot. */
  async revoke(req: RevocationRequest, actor: RevocationActor): Promise<Revocation> {
    if (!REVOCATION_KINDS.includes(req.kind)) throw new InvalidRequest(`revocation kind must be one of ${REVOCATION_KINDS.join(', ')}`)
    if (!isClassAdSafe(req.value)) throw new InvalidRequest(`${req.kind} must be 1 to 256 printable ASCII characters without quotes or backslashes`)
    if (req.reason !== undefined && (req.reason.length > 500 || /[\x00-\x1f\x7f]/.test(req.reason))) {
      throw new InvalidRequest('reason must be at most 500 characters without control characters')
    }
    const now = this.#deps.clock.now()
    let until = now + this.#deps.maxTokenLifetime
    if (req.kind === 'jti') {
      if (req.exp !== undefined) {
        if (!Number.isSafeInteger(req.exp) || req.exp < 0) throw new InvalidRequest('exp must be whole epoch seconds')
        until = req.exp
      } else {
        const issued = (await this.#deps.store.query({ jti: req.value, type: 'token.issued', limit: 1 })).records[0]
        if (issued?.event.exp !== undefined) until = issued.event.exp
      }
    }
    const event: AuditEvent = {
      type: 'token.revoked',
      time: now,
      caller: { sub: actor.principal },
      ...(actor.requestId ? { requestId: actor.requestId } : {}),
      ...(actor.clientAddress ? { clientAddress: actor.clientAddress } : {}),
      ...(req.kind === 'jti' ? { jti: req.value } : {}),
      ...(req.kind === 'sub' ? { issuedSub: req.value } : {}),
      ...(req.kind === 'role' ? { role: req.value } : {}),
      ...(req.kind === 'site' ? { site: req.value } : {}),
      ...(req.reason ? { reason: req.reason } : {}),
    }
    const rev = await this.#deps.store.revoke({
      kind: req.kind, value: req.value, revokedAt: now, until,
      ...(req.reason ? { reason: req.reason } : {}), revokedBy: actor.principal,
    }, event)
    await this.refresh()
    return rev
  }

  async list(options: { all?: boolean } = {}): Promise<Revocation[]> {
    return this.#deps.store.listRevocations(options.all ? {} : { activeAt: this.#deps.clock.now() })
  }

  /** SEC_TOKEN_REVOCATION_EXPR from the store (not the snapshot), pruned of entries that match nothing valid. */
  async condorExpression(): Promise<{ expr: string; clauses: number; generatedAt: number }> {
    const now = this.#deps.clock.now()
    const revs = await this.#deps.store.listRevocations({ activeAt: now })
    return { ...buildRevocationExpression(revs, now), generatedAt: now }
  }
}
