import { ADMIN_ROLE, CENTRAL_MANAGER_ROLE, identityUser, isAttachRole, MAX_IDENTITY_LENGTH, RESERVED_USERS, ROLE_NAME, WILDCARD_AUDIENCES } from '../policy/schema.ts'
import { htcondorLevelsOfScopes, parseScope, toAuthzLevel } from '../policy/scopes.ts'
import { AUTHZ_LEVELS, expandAuthz, type AuthzLevel } from './authz.ts'
import type { AllowedDecision } from './issue.ts'
import { quote } from '../lib/quote.ts'
import type { TokenProfile } from './scitoken.ts'

/**
 * Levels that act on the pool itself rather than on one user's jobs: ADMINISTRATOR (condor_off, drain,
 * reconfig, and what ALLOW_ADMINISTRATOR trusts), CONFIG (condor_config_val -set, i.e. changing what the
 * daemons run), DAEMON (daemon-to-daemon trust: a holder can pose as a schedd, shadow or startd) and
 * NEGOTIATOR (hands out matches). READ, WRITE and ADVERTISE_* are what users and execute points hold.
 */
export const PRIVILEGED_LEVELS: readonly AuthzLevel[] = ['ADMINISTRATOR', 'CONFIG', 'DAEMON', 'NEGOTIATOR']
const PRIVILEGED: ReadonlySet<AuthzLevel> = new Set(PRIVILEGED_LEVELS)

/** What a local operator asks for with the broker's own keys: no IAM caller, so no policy rule matches. */
export interface OperatorRequest {
  tokenKind: 'idtoken' | 'scitoken'
  /** Becomes `ctb_role` (and `ctb_gen` of that role), so `revoke --role` reaches the token. */
  role: string
  /** IDTOKEN `sub` (user@domain) or SciToken `sub`. */
  identity: string
  /** IDTOKEN: HTCondor levels; SciToken: scope tokens. */
  scopes: readonly string[]
  /** SciToken only. */
  audience: readonly string[]
  /** Seconds; absent: the configured default for the kind. */
  lifetime?: number
  profile?: TokenProfile
  /**
   * Explicit permissions, each naming what it lets through; nothing is implied. `directAttach` is a
   * policy grant's `direct_attach`: WRITE on a pilot or startd role.
   */
  allow: { privileged: readonly AuthzLevel[]; reservedUsers: readonly string[]; anyAudience: boolean; directAttach: boolean }
}

export interface OperatorLimits {
  defaultLifetime: { idtoken: number; scitoken: number }
  maxLifetime: { idtoken: number; scitoken: number }
}

/** The explicit permission a refusal can be lifted with; the edge names its own flag for it. */
export type OperatorOverride =
  | { kind: 'privileged'; value: AuthzLevel }
  /** `role`: the role that must also be named, when the request names another. */
  | { kind: 'reserved_user'; value: string; role?: string }
  | { kind: 'any_audience'; value: string }
  | { kind: 'direct_attach'; value: string }

export interface OperatorRefusal {
  allow: false
  reason: string
  override?: OperatorOverride
}

/**
 * Decides an operator's request with the checks a policy grant and `decide` apply to an IAM caller:
 * storage paths through the same parser as policy scopes, no wildcard audience, reserved HTCondor users
 * and privileged levels only when explicitly named, and the configured lifetime cap (refused, not clamped:
 * an operator who asked for more should learn they did not get it). The result feeds `issueToken`, so the
 * token carries the same revocation claims and is audited before it is handed out.
 */
export function decideOperatorGrant(req: OperatorRequest, limits: OperatorLimits): AllowedDecision | OperatorRefusal {
  if (!ROLE_NAME.test(req.role)) return refuse(`role ${quote(req.role)} must be lower-case letters, digits and dashes, starting with a letter`)
  if (req.role === ADMIN_ROLE) return refuse(`role ${ADMIN_ROLE} opens the admin API only and is never carried by a token`)
  if (req.allow.directAttach && !isAttachRole(req.role)) return refuse(`direct attach applies only to pilot and startd roles, not ${req.role}`)
  if (req.identity.length > MAX_IDENTITY_LENGTH) return refuse(`the identity is ${req.identity.length} characters long; at most ${MAX_IDENTITY_LENGTH} are issued`)

  const scopes: string[] = []
  const levels: AuthzLevel[] = []
  if (req.tokenKind === 'idtoken') {
    for (const s of req.scopes) {
      const level = toAuthzLevel(s.trim())
      if (!level) return refuse(`unknown HTCondor authorization level ${quote(s)}; expected one of ${AUTHZ_LEVELS.join(', ')}`)
      if (!scopes.includes(level)) { scopes.push(level); levels.push(level) }
    }
    if (scopes.length === 0) return refuse('at least one authorization level is required: an IDTOKEN without scopes is unrestricted')
  } else {
    for (const s of req.scopes.flatMap((x) => x.split(' ')).filter((x) => x.length > 0)) {
      const p = parseScope(s)
      if ('error' in p) return refuse(p.error)
      if (p.kind === 'condor') levels.push(p.level)
      if (!scopes.includes(p.text)) scopes.push(p.text)
    }
    if (scopes.length === 0) return refuse('at least one scope is required: HTCondor grants nothing to a SciToken without one')
  }
  for (const level of levels) {
    if (PRIVILEGED.has(level) && !req.allow.privileged.includes(level)) {
      return refuse(`${level} is a privileged HTCondor level: it acts on the pool, not on one user's jobs`, { kind: 'privileged', value: level })
    }
  }
  // The policy schema's rule for pilot and startd roles, on the levels HTCondor would grant.
  const attachWrite = isAttachRole(req.role) && (req.tokenKind === 'idtoken' ? expandAuthz(levels) : htcondorLevelsOfScopes(scopes)).has('WRITE')
  if (attachWrite && !req.allow.directAttach) {
    return refuse(`WRITE (or a level or scopes implying it) on role ${req.role} is direct attach: pilots and startds only advertise`, { kind: 'direct_attach', value: req.role })
  }

  let audience: string[]
  if (req.tokenKind === 'idtoken') {
    audience = []
  } else {
    audience = [...new Set(req.audience)]
    if (audience.length === 0) return refuse('an audience is required: aud is mandatory in SciTokens 2.0 and WLCG tokens')
    const any = audience.find((a) => WILDCARD_AUDIENCES.has(a))
    if (any !== undefined && !req.allow.anyAudience) {
      return refuse(`audience ${quote(any)} is accepted by every service; name the service the token is for`, { kind: 'any_audience', value: any })
    }
  }

  const max = limits.maxLifetime[req.tokenKind]
  const lifetime = req.lifetime ?? limits.defaultLifetime[req.tokenKind]
  if (!Number.isSafeInteger(lifetime) || lifetime <= 0) return refuse('lifetime must be a positive whole number of seconds')
  if (lifetime > max) return refuse(`lifetime ${lifetime}s exceeds ${req.tokenKind}.max_lifetime (${max}s)`)

  const user = identityUser(req.identity)
  if (RESERVED_USERS.has(user)) {
    // As in policy grants, only the central manager may be a reserved user; here it must also be named.
    const why = `identity ${req.identity} is reserved: HTCondor's default security config trusts ${user}@… as a daemon or administrator`
    if (req.role !== CENTRAL_MANAGER_ROLE) return refuse(`${why}, so only role ${CENTRAL_MANAGER_ROLE} may carry it`, { kind: 'reserved_user', value: user, role: CENTRAL_MANAGER_ROLE })
    if (!req.allow.reservedUsers.includes(user)) return refuse(why, { kind: 'reserved_user', value: user })
  }

  return {
    allow: true,
    ruleId: ruleIdOf(levels, user, audience, attachWrite),
    role: req.role,
    tokenKind: req.tokenKind,
    identity: req.identity,
    scopes,
    audience,
    lifetime,
    ...(req.tokenKind === 'scitoken' && req.profile ? { profile: req.profile } : {}),
  }
}

/** The audit record's `policyRule`: `cli`, plus the explicit permissions this token actually used. */
function ruleIdOf(levels: readonly AuthzLevel[], user: string, audience: readonly string[], directAttach: boolean): string {
  const used: string[] = []
  const privileged = [...new Set(levels.filter((l) => PRIVILEGED.has(l)))]
  if (privileged.length > 0) used.push(`privileged=${privileged.join(',')}`)
  if (RESERVED_USERS.has(user)) used.push(`reserved_user=${user}`)
  if (audience.some((a) => WILDCARD_AUDIENCES.has(a))) used.push('any_audience')
  if (directAttach) used.push('direct_attach')
  return used.length > 0 ? `cli (${used.join('; ')})` : 'cli'
}

function refuse(reason: string, override?: OperatorOverride): OperatorRefusal {
  return { allow: false, reason, ...(override ? { override } : {}) }
}
