import { hash } from 'node:crypto'
import type { AuditEvent, AuditLog } from '../audit/audit_log.ts'
import type { Config } from '../config.ts'
import type { VerifiedSubject } from '../iam/subject.ts'
import type { SigningKeys } from '../keys/signing_keys.ts'
import type { Clock } from '../lib/clock.ts'
import type { Decision, TokenKind } from '../policy/decision.ts'
import { isClassAdSafe } from '../revocation/condor_expression.ts'
import { parseAuthzLevel } from './authz.ts'
import { buildIdTokenClaims, mintIdToken, type IdTokenClaims } from './idtoken.ts'
import { buildSciTokenClaims, mintSciToken, type SciTokenClaims, type TokenProfile } from './scitoken.ts'

export type AllowedDecision = Extract<Decision, { allow: true }>

/** The claims every issued token carries so that HTCondor's revocation expression can match it. */
export interface RevocationClaims {
  readonly ctb_role: string
  readonly ctb_gen: number
  readonly ctb_site?: string
}

export type IssuedSciTokenClaims = SciTokenClaims & RevocationClaims

/** Who asked and from where; no HTTP types. */
export interface IssueContext {
  requestId: string
  caller: VerifiedSubject
  clientAddress?: string
  /** Added to the record's detail: who minted on the caller's behalf, and for what (job credentials). */
  detail?: Record<string, unknown>
}

export interface IssueDeps {
  keys: SigningKeys
  audit: AuditLog
  clock: Clock
  /** `iss` of IDTOKENs (TRUST_DOMAIN). */
  trustDomain: string
  /** `iss` of SciTokens (https URL). */
  issuer: string
  /** Profile when the decision names none. */
  sciTokenProfile: TokenProfile
  /** Current revocation generation per role (RevocationService): goes into `ctb_gen`. */
  generations: { generationOf(role: string): number }
  /** Hard caps per kind (config *.max_lifetime); a decision above them is clamped, never exceeded. */
  maxLifetime: { idtoken: number; scitoken: number }
}

/** IssueDeps from the broker configuration: the two issuers, the default SciToken profile and the lifetime caps. */
export function issueDepsFrom(config: Config, parts: Pick<IssueDeps, 'keys' | 'audit' | 'clock' | 'generations'>): IssueDeps {
  return {
    ...parts,
    trustDomain: config.trust_domain,
    issuer: config.issuer,
    sciTokenProfile: config.scitoken.profile,
    maxLifetime: { idtoken: config.idtoken.max_lifetime, scitoken: config.scitoken.max_lifetime },
  }
}

export interface IssuedTokenResult {
  token: string
  claims: IdTokenClaims | IssuedSciTokenClaims
  tokenKind: TokenKind
  jti: string
  /** Seconds until `exp`. */
  expiresIn: number
  /** The granted scope string as it appears in the token. */
  scope: string
}

/**
 * Mints the token an allowed decision describes (with keys that passed their self-test at load,
 * key_self_test.ts) and returns it only after its audit record is committed: if `audit.record` rejects, this throws and the token is discarded (fail closed, Vault's rule).
 * Every token carries `ctb_role`, `ctb_gen` (and `ctb_site`) for revocation (docs/htcondor-tokens.md §2.4).
 * Every one of them comes from the decision (the policy), never from the request: a caller must not be
 * able to choose the label a revocation is keyed on.
 * @see docs/htcondor-tokens.md §1.3, §5.8
 */
export async function issueToken(decision: AllowedDecision, ctx: IssueContext, deps: IssueDeps): Promise<IssuedTokenResult> {
  const site = decision.site
  // The policy schema allows only plain names; a site that could escape a ClassAd string is a bug upstream.
  if (site !== undefined && !isClassAdSafe(site)) throw new TypeError('a decision carried a site that is not ClassAd-safe')
  const now = deps.clock.now()
  const revocation: RevocationClaims = {
    ctb_role: decision.role,
    ctb_gen: deps.generations.generationOf(decision.role),
    ...(site !== undefined ? { ctb_site: site } : {}),
  }
  // policy/decide may pick the jti up front so `{jti8}` in the identity matches the token.
  const jti = 'jti' in decision && typeof decision.jti === 'string' ? decision.jti : undefined
  let token: string
  let claims: IdTokenClaims | IssuedSciTokenClaims
  if (decision.tokenKind === 'idtoken') {
    const idClaims = buildIdTokenClaims({
      trustDomain: deps.trustDomain,
      subject: decision.identity,
      authz: decision.scopes.map(parseAuthzLevel),
      lifetimeSeconds: Math.min(decision.lifetime, deps.maxLifetime.idtoken),
      now,
      ...(jti ? { jti } : {}),
      extra: { ...revocation },
    })
    token = mintIdToken(idClaims, deps.keys.idtoken)
    claims = idClaims
  } else {
    const sciClaims: IssuedSciTokenClaims = {
      ...buildSciTokenClaims({
        issuer: deps.issuer,
        subject: decision.identity,
        audience: decision.audience,
        scopes: decision.scopes,
        lifetimeSeconds: Math.min(decision.lifetime, deps.maxLifetime.scitoken),
        now,
        profile: decision.profile ?? (decision.tokenKind === 'access_token' ? 'wlcg' : deps.sciTokenProfile),
        ...(jti ? { jti } : {}),
      }),
      ...revocation,
    }
    token = mintSciToken(sciClaims, deps.keys.scitoken)
    claims = sciClaims
  }
  const scope = claims.scope ?? ''
  await deps.audit.record({
    type: 'token.issued',
    time: now,
    requestId: ctx.requestId,
    caller: callerOf(ctx.caller),
    ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
    role: decision.role,
    tokenKind: decision.tokenKind,
    issuedSub: claims.sub,
    jti: claims.jti,
    scopes: scope.split(' ').filter((s) => s.length > 0),
    audience: typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? [...(claims.aud as string[])] : [],
    exp: claims.exp,
    tokenSha256: hash('sha256', token, 'hex'),
    policyRule: decision.ruleId,
    decision: 'allow',
    ...(site !== undefined ? { site } : {}),
    detail: { ...ctx.detail, gen: revocation.ctb_gen, ...('host' in decision && typeof decision.host === 'string' ? { host: decision.host } : {}) },
  })
  return { token, claims, tokenKind: decision.tokenKind, jti: claims.jti, expiresIn: claims.exp - now, scope }
}

/** What was asked, for a denial record (the decision request minus the caller). */
export interface DenialRequest {
  role?: string
  tokenKind?: TokenKind
  audience?: string[]
  scopes?: string[]
  host?: string
  /** The site the policy bound, when the refusal came after an allowed decision (never the caller's word). */
  site?: string
  /** The site the caller named, kept apart from `site` so audit filters by site count policy-bound sites only. */
  requestedSite?: string
}

/**
 * Records a refusal: a policy denial, or any OAuth error raised while serving the request. Resolves after
 * commit and rejects if the store failed; the caller decides what a failed denial record means (it never
 * turns the refusal into a token).
 */
export async function recordDenial(
  decision: { allow?: false; error: string; reason: string; ruleId?: string | undefined },
  request: DenialRequest,
  ctx: Omit<IssueContext, 'caller'> & { caller?: VerifiedSubject },
  deps: Pick<IssueDeps, 'audit' | 'clock'>,
): Promise<void> {
  const event: AuditEvent = {
    type: 'token.denied',
    time: deps.clock.now(),
    requestId: ctx.requestId,
    ...(ctx.caller ? { caller: callerOf(ctx.caller) } : {}),
    ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
    ...(request.role !== undefined ? { role: request.role } : {}),
    ...(request.tokenKind !== undefined ? { tokenKind: request.tokenKind } : {}),
    ...(request.scopes !== undefined ? { scopes: request.scopes } : {}),
    ...(request.audience !== undefined ? { audience: request.audience } : {}),
    ...(decision.ruleId !== undefined ? { policyRule: decision.ruleId } : {}),
    decision: 'deny',
    reason: `${decision.error}: ${decision.reason}`,
    ...(request.site !== undefined ? { site: request.site } : {}),
    ...(request.host !== undefined || request.requestedSite !== undefined
      ? { detail: { ...(request.host !== undefined ? { host: request.host } : {}), ...(request.requestedSite !== undefined ? { requestedSite: request.requestedSite } : {}) } }
      : {}),
  }
  await deps.audit.record(event)
}

export function callerOf(s: VerifiedSubject): NonNullable<AuditEvent['caller']> {
  return { iss: s.iss, sub: s.sub, ...(s.client_id !== undefined ? { client_id: s.client_id } : {}), groups: s.groups }
}
