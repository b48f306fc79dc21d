import type { AuthzLevel } from '../issuance/authz.ts'
import type { CompiledGrant, PolicyContext } from './compile.ts'
import type { Decision, DecisionRequest, TokenKind } from './decision.ts'
import { isHostName, SAFE_VALUE } from './patterns.ts'
import { CENTRAL_MANAGER_ROLE, identityUser, MAX_IDENTITY_LENGTH, RESERVED_USERS, SYSTEM_ACCOUNTS } from './schema.ts'
import { describeNameRefusal, refuseCallerName, type CallerValue, type NameRefusal } from './caller_names.ts'
import { compileAllowedScopes, parseScope, scopeAllowed, toAuthzLevel, type AllowedScopes } from './scopes.ts'
import { SITE_PLACEHOLDER, type TemplatePart } from './template.ts'
import { asciiLower } from '../lib/ascii_case.ts'
import { quote } from '../lib/quote.ts'

export type Denial = Extract<Decision, { allow: false }>

function deny(ruleId: string, error: Denial['error'], reason: string): Denial {
  return { allow: false, ruleId, error, reason }
}

/**
 * Checks one request against one grant whose rule already matched the caller. The first failed check
 * decides the error, in a fixed order: token kind, host, site, parameters, audience, scope, lifetime, identity.
 * @see RFC 8693 §2.2.2 (invalid_target: audience only), RFC 6749 §5.2 (invalid_scope, unauthorized_client, invalid_request)
 */
export function evaluateGrant(ruleId: string, g: CompiledGrant, req: DecisionRequest, ctx: PolicyContext, jti: string): Decision {
  const role = g.role
  const trimmed: ('scope' | 'lifetime')[] = []

  const kind: TokenKind = req.tokenKind ?? g.defaultTokenKind
  if (!g.tokenKinds.has(kind)) {
    return deny(ruleId, 'invalid_request', `role ${role} is not issued as ${kind} (this rule allows ${[...g.tokenKinds].join(', ')})`)
  }

  let host: string | undefined
  if (g.hosts) {
    if (req.host === undefined || req.host === '') return deny(ruleId, 'invalid_request', `host is required for role ${role}`)
    host = asciiLower(req.host)
    if (!isHostName(host)) return deny(ruleId, 'invalid_request', `host ${quote(req.host)} is not a valid host name`)
    if (!g.hosts.test(host)) return deny(ruleId, 'unauthorized_client', `host ${host} is not allowed for role ${role}`)
  }

  const site = bindSite(ruleId, g, req)
  if (typeof site === 'object') return site

  for (const [name, patterns] of g.params) {
    const v = req.params?.[name]
    if (v === undefined || v === '') {
      if (g.requiredParams.includes(name)) return deny(ruleId, 'invalid_request', `parameter ${name} is required for role ${role}`)
      continue
    }
    if (!SAFE_VALUE.test(v)) return deny(ruleId, 'invalid_request', `parameter ${name} must be letters, digits, _ . - (at most 128)`)
    if (!patterns.test(v)) return deny(ruleId, 'unauthorized_client', `${name}=${v} is not allowed for role ${role}`)
  }

  let audience: readonly string[]
  if (kind === 'idtoken') {
    // An IDTOKEN has no aud claim; its iss is the pool's TRUST_DOMAIN, which is the only target it can have.
    if (req.audience.length > 0 && (req.audience.length !== 1 || req.audience[0] !== ctx.trustDomain)) {
      const bad = req.audience.find((a) => a !== ctx.trustDomain) ?? req.audience[0]!
      return deny(ruleId, 'invalid_target', `an IDTOKEN is issued for trust domain ${ctx.trustDomain} only, not ${quote(bad)}`)
    }
    audience = [ctx.trustDomain]
  } else if (req.audience.length === 0) {
    if (!g.defaultAudience) return deny(ruleId, 'invalid_target', `an audience is required for role ${role} (${kind})`)
    audience = g.defaultAudience
  } else {
    const bad = req.audience.find((a) => !g.audiences!.test(a))
    if (bad !== undefined) return deny(ruleId, 'invalid_target', `audience ${quote(bad)} is not allowed for role ${role}`)
    audience = [...new Set(req.audience)]
    // Least privilege: every service named in aud accepts the token, so one stolen at one replays at the others.
    if (audience.length > 1 && !g.multipleAudiences) {
      return deny(ruleId, 'invalid_target', `role ${role} issues a token for one audience at a time, not ${audience.length} (ask once per service)`)
    }
  }

  const requested = req.scopes ?? []
  let scopes: string[]
  if (kind === 'idtoken') {
    if (requested.length === 0) {
      scopes = [...g.authzDefaults]
    } else {
      const levels: AuthzLevel[] = []
      for (const s of requested) {
        const level = toAuthzLevel(s)
        if (!level) return deny(ruleId, 'invalid_scope', `${quote(s)} is not an HTCondor authorization level`)
        if (g.authz.has(level)) { if (!levels.includes(level)) levels.push(level) }
        else if (g.upTo) trimmed.push('scope')
        else return deny(ruleId, 'invalid_scope', `${level} exceeds what role ${role} allows (${g.authzDefaults.join(' ')})`)
      }
      if (levels.length === 0) return deny(ruleId, 'invalid_scope', `none of the requested levels is allowed for role ${role} (${g.authzDefaults.join(' ')})`)
      scopes = levels
    }
  } else {
    const allowed = g.scopeTemplates ? renderScopes(g.scopeTemplates, g.reservedNames ?? SYSTEM_ACCOUNTS, req) : g.scopes!
    if ('denied' in allowed) return deny(ruleId, 'unauthorized_client', `the caller's token has no usable ${allowed.denied}, which the scopes of role ${role} name`)
    if ('refused' in allowed) {
      return deny(ruleId, 'unauthorized_client', describeNameRefusal(allowed.refused, 'path segment', `cannot name a path in the scopes of role ${role}`))
    }
    if (requested.length === 0) {
      scopes = [...allowed.defaults]
    } else {
      scopes = []
      for (const s of requested) {
        const p = parseScope(s)
        if ('error' in p) return deny(ruleId, 'invalid_scope', p.error.length > 160 ? `scope ${quote(s)} is not valid` : p.error)
        if (scopeAllowed(allowed, p)) { if (!scopes.includes(p.text)) scopes.push(p.text) }
        else if (g.upTo) trimmed.push('scope')
        // A grant naming the caller reads the same for everyone; the paths it gives this caller say why.
        else return deny(ruleId, 'invalid_scope', `scope ${quote(p.text)} exceeds what role ${role} allows${g.scopeTemplates ? ` (for this caller: ${allowed.defaults.join(' ')})` : ''}`)
      }
      if (scopes.length === 0) return deny(ruleId, 'invalid_scope', `none of the requested scopes is allowed for role ${role}`)
    }
  }

  let lifetime = g.lifetime.default
  if (req.lifetime !== undefined) {
    if (!Number.isSafeInteger(req.lifetime) || req.lifetime <= 0) return deny(ruleId, 'invalid_request', 'lifetime must be a positive whole number of seconds')
    if (req.lifetime <= g.lifetime.max) lifetime = req.lifetime
    else if (g.upTo) { lifetime = g.lifetime.max; trimmed.push('lifetime') }
    // A lifetime is a parameter, not a target (RFC 8693 keeps invalid_target for audience/resource).
    else return deny(ruleId, 'invalid_request', `lifetime ${req.lifetime}s exceeds the maximum ${g.lifetime.max}s for role ${role}`)
  }

  let identity = ''
  // Where each value the caller chose starts in the identity: those before its last @ make the user part. Not only
  // its IAM values: within the grant's hosts and params the caller picks {host} and a parameter too, so under
  // "{host_short}@{uid_domain}" with hosts ["*.wn.example.org"] the host daemon.wn.example.org would make daemon@.
  const callerValues: (CallerValue & { readonly at: number })[] = []
  for (const part of g.identity) {
    if ('literal' in part) { identity += part.literal; continue }
    const name = part.placeholder
    let v: string | undefined
    let picked = true
    switch (name) {
      case 'sub': case 'preferred_username': case 'client_id': v = subjectValue(name, req); picked = false; break
      case 'host': v = host; break
      case 'host_short': v = host?.split('.')[0]; break
      case 'jti8': v = jti.slice(0, 8); break
      case SITE_PLACEHOLDER: v = site; break
      default: v = req.params?.[name]
    }
    // {jti8} is the broker's and {site} the policy's: neither is the caller's to steer.
    if (v !== undefined && name !== 'jti8' && name !== SITE_PLACEHOLDER) {
      callerValues.push({ placeholder: name, value: v, at: identity.length, ...(picked ? { picked: true as const } : {}) })
    }
    if (v === undefined) return deny(ruleId, 'unauthorized_client', `the caller's token has no ${name}, which the identity of role ${role} needs`)
    // Values may not carry @ , space or control characters: they would move the user/domain split or break ALLOW lists.
    if (!SAFE_VALUE.test(v)) return deny(ruleId, 'unauthorized_client', `the caller's ${name} cannot be used in an HTCondor identity`)
    identity += v
  }
  const user = identityUser(identity)
  if (RESERVED_USERS.has(user) && role !== CENTRAL_MANAGER_ROLE) {
    return deny(ruleId, 'unauthorized_client', `identity ${identity} is reserved: only the ${CENTRAL_MANAGER_ROLE} role may be ${user}@...`)
  }
  // The user part is the UNIX account an execute node sharing the UID_DOMAIN runs the jobs as, and what a
  // SciToken mapfile's \1 turns a sub into: the same rule as for a directory in a scope path. Values hold no
  // @ (SAFE_VALUE), so the last @ is a literal's; an identity without one is all user, as HTCondor reads it.
  const userEnd = identity.includes('@') ? identity.lastIndexOf('@') : identity.length
  const inUser = callerValues.filter((c) => c.at < userEnd)
  const refusedUser = inUser.length > 0 ? refuseCallerName(identity.slice(0, userEnd), inUser, g.reservedNames ?? SYSTEM_ACCOUNTS) : undefined
  if (refusedUser) return deny(ruleId, 'unauthorized_client', describeNameRefusal(refusedUser, 'user', `cannot name the user of the identity of role ${role}`))
  if (identity.length > MAX_IDENTITY_LENGTH) return deny(ruleId, 'invalid_request', `the identity for role ${role} would exceed ${MAX_IDENTITY_LENGTH} characters`)

  return {
    allow: true,
    ruleId,
    role,
    tokenKind: kind,
    identity,
    scopes,
    audience: [...audience],
    lifetime,
    ...(kind === 'scitoken' ? { profile: g.profile } : {}),
    jti,
    ...(host !== undefined ? { host } : {}),
    ...(site !== undefined ? { site } : {}),
    ...(trimmed.length > 0 ? { trimmed: [...new Set(trimmed)] } : {}),
  }
}

/** A value of the verified caller for `{sub}`, `{preferred_username}` or `{client_id}`. */
function subjectValue(name: 'sub' | 'preferred_username' | 'client_id', req: DecisionRequest): string | undefined {
  const s = req.subject
  if (name === 'sub') return s.sub
  if (name === 'client_id') return s.client_id
  return s.preferred_username ?? (typeof s.claims.preferred_username === 'string' ? s.claims.preferred_username : undefined)
}

/**
 * A grant's scopes with the caller's values put into their paths, compiled for this request. A value must be
 * a plain name (SAFE_VALUE: no '/', and no leading '.', so never '.' or '..'): it then names one directory,
 * the caller's, and cannot reach a parent or a sibling. Otherwise the placeholder's name, for the refusal.
 * The value and the segment it completes must pass refuseCallerName (lower case, not a reserved account name):
 * otherwise why, for the refusal.
 */
function renderScopes(
  templates: readonly (readonly TemplatePart[])[], reserved: ReadonlySet<string>, req: DecisionRequest,
): AllowedScopes | { denied: string } | { refused: NameRefusal } {
  const rendered: string[] = []
  for (const parts of templates) {
    let text = ''
    for (const part of parts) {
      if ('literal' in part) { text += part.literal; continue }
      const v = subjectValue(part.placeholder as 'sub' | 'preferred_username' | 'client_id', req)
      if (v === undefined || !SAFE_VALUE.test(v)) return { denied: part.placeholder }
      text += v
      // The directory the value names is its whole segment: a placeholder ends its segment (schema.ts) but may
      // follow literal text in it, so in /store/user/d{preferred_username} the caller "aemon" would get daemon.
      const refused = refuseCallerName(text.slice(text.lastIndexOf('/') + 1), [{ placeholder: part.placeholder, value: v }], reserved)
      if (refused) return { refused }
    }
    rendered.push(text)
  }
  return compileAllowedScopes(rendered)
}

/**
 * The site label of the token, from the grant only: the request's `site` may pick one of the grant's
 * sites but never add one, because `ctb_site` is what `revoke --site` cuts and the audit log counts.
 * Returns the bound site (undefined when the grant binds none and none was named) or the denial.
 */
function bindSite(ruleId: string, g: CompiledGrant, req: DecisionRequest): string | undefined | Denial {
  const role = g.role
  const named = req.params?.[SITE_PLACEHOLDER]
  if (named === undefined || named === '') {
    if (!g.sites) return undefined
    if (g.sites.length === 1) return g.sites[0]
    return deny(ruleId, 'invalid_request', `site is required for role ${role}: this rule binds ${g.sites.join(', ')}`)
  }
  if (!SAFE_VALUE.test(named)) return deny(ruleId, 'invalid_request', 'site must be letters, digits, _ . - (at most 128)')
  if (!g.sites) return deny(ruleId, 'unauthorized_client', `site=${named} is not allowed for role ${role}: this rule binds no site`)
  if (!g.sites.includes(named)) return deny(ruleId, 'unauthorized_client', `site=${named} is not allowed for role ${role}: this rule binds ${g.sites.join(', ')}`)
  return named
}
