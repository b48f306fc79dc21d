import { hash } from 'node:crypto'
import type { AuditLog } from '../audit/audit_log.ts'
import { InvalidTarget, TemporarilyUnavailable } from '../errors.ts'
import type { IamTokenExchanger } from '../iam/outbound_exchange.ts'
import type { VerifiedSubject } from '../iam/subject.ts'
import type { Clock } from '../lib/clock.ts'
import type { Decision } from '../policy/decision.ts'
import type { IssuedToken, RequestContext } from './exchange.ts'
import { callerOf } from './issue.ts'
import { unverifiedJwtExp } from '../lib/jwt_payload.ts'

/**
 * requested_token_type access_token: an audience-narrowed IAM access token obtained by the broker as its
 * own IAM client. IAM sets the lifetime from the broker client's setting, so a token living longer than
 * the role allows is refused rather than relayed. Audited before it is returned, like minted tokens.
 * @see docs/iam-and-wlcg.md §1.4
 */
export async function narrowAtIam(
  decision: Extract<Decision, { allow: true }>,
  subject: VerifiedSubject,
  subjectToken: string,
  ctx: RequestContext,
  deps: { exchanger: Pick<IamTokenExchanger, 'exchange'>; audit: AuditLog; clock: Clock },
): Promise<IssuedToken> {
  const got = await deps.exchanger.exchange({ subjectToken, subject, scopes: decision.scopes, audience: decision.audience, lifetime: decision.lifetime })
  const now = deps.clock.now()
  // RFC 6749 §5.1 makes expires_in only RECOMMENDED, and relying parties honour the JWT's own exp: the
  // token lives as long as the longer of the two says. With neither, its life is unknown: not relayed.
  const exp = unverifiedJwtExp(got.accessToken)
  const stated = [got.expiresIn, exp !== undefined ? exp - now : undefined].filter((n): n is number => n !== undefined)
  if (stated.length === 0) throw new TemporarilyUnavailable('IAM did not say how long the narrowed access token lives; try again later')
  const expiresIn = Math.max(...stated)
  // The exp is read unverified: one already past names a token no relying party takes (clock skew or a
  // stale answer), and relayed it would report a negative expires_in and an audit record ending before it began.
  if (expiresIn <= 0) throw new TemporarilyUnavailable('IAM returned a narrowed access token that has already expired; try again later')
  if (expiresIn > decision.lifetime) {
    throw new InvalidTarget(`IAM issued a token valid for ${expiresIn} s, above the ${decision.lifetime} s the role allows; lower the broker client's access-token lifetime at IAM`)
  }
  await deps.audit.record({
    type: 'token.issued',
    time: now,
    requestId: ctx.requestId,
    caller: callerOf(subject),
    ...(ctx.clientAddress ? { clientAddress: ctx.clientAddress } : {}),
    role: decision.role,
    tokenKind: 'access_token',
    issuedSub: subject.sub,
    scopes: got.scopes,
    audience: got.audience,
    exp: now + expiresIn,
    tokenSha256: hash('sha256', got.accessToken, 'hex'),
    policyRule: decision.ruleId,
    decision: 'allow',
  })
  return { token: got.accessToken, expiresIn, scope: got.scopes.join(' ') }
}

