import type { AuditLog } from '../audit/audit_log.ts'
import type { RefusalTally } from '../audit/refusal_tally.ts'
import type { Config } from '../config.ts'
import type { IamAdapter } from '../iam/create_iam_adapter.ts'
import type { SigningKeys } from '../keys/signing_keys.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import { decide } from '../policy/decide.ts'
import type { PolicyHolder } from '../policy/policy_holder.ts'
import type { IssuanceBlocks, RevocationChecker } from '../revocation/revocation_checker.ts'
import type { RevocationService } from '../revocation/revocation_service.ts'
import type { BrokerStore } from '../storage/chained_store.ts'
import { enrolmentKeyFrom } from './pilot_enrolment.ts'
import { pilotExchange, type PilotExchangeDeps } from './pilot_exchange.ts'
import { PilotRegistry } from './pilot_registry.ts'
import type { ExchangeDeps } from './exchange.ts'
import { issueDepsFrom, issueToken } from './issue.ts'
import { narrowAtIam } from './narrow_at_iam.ts'
import type { BrokerObserver } from '../metrics/observer.ts'
import { observeAudit, observePilotStore, observeRefusals } from '../metrics/observe_pipeline.ts'

/**
 * Wires the token-exchange pipeline from built services: the IAM verifier, the policy in force, issuance
 * with audit, and IAM narrowing. One function, so the server and the conformance suite run the same wiring.
 */
export function exchangeDepsFrom(parts: {
  config: Config
  keys: SigningKeys
  audit: AuditLog
  clock: Clock
  iam: Pick<IamAdapter, 'verifier' | 'exchanger'>
  policy: Pick<PolicyHolder, 'current'>
  generations: { generationOf(role: string): number }
  /** Caller and identity revocations (the RevocationService): they stop new issuance. */
  blocks: IssuanceBlocks
  refusals: Pick<RefusalTally, 'note'>
  log: Logger
  /** Rate limits on the exchange (src/ratelimit); absent: none. */
  limits?: ExchangeDeps['limits']
  /**
   * SLURM pilots (docs/pilots.md): the store that counts enrolment redemptions and finds recorded pilot
   * tokens, and the revocations that stop them. Without it, pilot requests are refused as unsupported.
   */
  pilots?: {
    store: Pick<BrokerStore, 'record' | 'redeemPilotSlot' | 'renewPilotToken' | 'query'>
    /** `revoke`: a reused pilot token revokes its pilot's identity. */
    revocations: RevocationChecker & IssuanceBlocks & { generationOf(role: string): number } & Pick<RevocationService, 'revoke'>
    /** Where pilot tokens are remembered (metrics count live pilots from it); default: a new one. */
    registry?: PilotRegistry
  }
  /** Metrics: hears of every record the pipeline writes and every refusal it counts. */
  observer?: BrokerObserver
}): ExchangeDeps {
  const { config, keys, clock, iam, policy, log, observer } = parts
  // The pipeline's own parts, wrapped: the core reports nothing itself (src/metrics/observe_pipeline.ts).
  const audit = observer ? observeAudit(parts.audit, observer) : parts.audit
  const refusals = observer ? observeRefusals(parts.refusals, observer) : parts.refusals
  const issueDeps = issueDepsFrom(config, { keys, audit, clock, generations: parts.generations })
  return {
    iam: iam.verifier,
    decide: (req) => decide(policy.current, req),
    issue: async (decision, subject, ctx) => {
      const r = await issueToken(decision, {
        requestId: ctx.requestId, caller: subject,
        ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
      }, issueDeps)
      return { token: r.token, expiresIn: r.expiresIn, scope: r.scope }
    },
    narrow: (decision, subject, subjectToken, ctx) => narrowAtIam(decision, subject, subjectToken, ctx, { exchanger: iam.exchanger, audit, clock }),
    blocks: parts.blocks,
    ...(parts.limits ? { limits: parts.limits } : {}),
    ...(parts.pilots ? { pilots: pilotPipeline({ ...parts, refusals } as typeof parts & { pilots: NonNullable<typeof parts.pilots> }) } : {}),
    audit,
    refusals,
    clock,
    log,
  }
}

/** The pilot requests' pipeline, wired from the same parts as the exchange. */
function pilotPipeline(parts: Parameters<typeof exchangeDepsFrom>[0] & { pilots: NonNullable<Parameters<typeof exchangeDepsFrom>[0]['pilots']> }): NonNullable<ExchangeDeps['pilots']> {
  const deps: PilotExchangeDeps = {
    iam: parts.iam.verifier,
    policy: parts.policy,
    idtokenKey: parts.keys.idtoken,
    enrolmentKey: enrolmentKeyFrom(parts.keys.idtoken),
    store: parts.observer ? observePilotStore(parts.pilots.store, parts.observer) : parts.pilots.store,
    registry: parts.pilots.registry ?? new PilotRegistry(parts.pilots.store),
    revocations: parts.pilots.revocations,
    refusals: parts.refusals,
    ...(parts.limits ? { limits: parts.limits } : {}),
    clock: parts.clock,
    log: parts.log,
    trustDomain: parts.config.trust_domain,
    maxIdTokenLifetime: parts.config.idtoken.max_lifetime,
  }
  return (flow, form, ctx) => pilotExchange(flow, form, ctx, deps)
}
