import { expandAuthz, type AuthzLevel } from '../issuance/authz.ts'
import type { TokenKind } from './decision.ts'
import { compilePatterns, type CompiledPatterns } from './patterns.ts'
import { ADMIN_ROLE, SYSTEM_ACCOUNTS, type Grant, type Rule } from './schema.ts'
import { compileAllowedScopes, toAuthzLevel, type AllowedScopes } from './scopes.ts'
import { DEFAULT_PILOT_IDENTITY, DEFAULT_PILOT_MAX_RESTARTS } from '../contract/pilot.ts'
import { foldConstants, parseTemplate, placeholdersOf, type TemplatePart } from './template.ts'

/**
 * A validated policy turned into prepared matchers: sets, one RegExp per pattern list, folded
 * templates, and rules indexed by role, so `decide` does no parsing and no regex compilation.
 */

/** What policies need from broker configuration. Built by `policyContextFromConfig`. */
export interface PolicyContext {
  /** The pool's TRUST_DOMAIN: `{trust_domain}`, and the only audience of IDTOKENs. */
  readonly trustDomain: string
  /** `{uid_domain}` in identity templates (users' `<user>@UID_DOMAIN`). */
  readonly uidDomain: string
  /** Values for `${NAME}` references in policy files, e.g. IAM_ISSUER. */
  readonly vars: Readonly<Record<string, string>>
  /** SciToken profile when a grant names none. */
  readonly scitokenProfile: 'wlcg' | 'scitokens2'
  /** Broker-wide lifetime caps; a grant's max above them is a load error. */
  readonly maxLifetime: { readonly idtoken?: number; readonly scitoken?: number }
}

/** Where a rule is written, for `policy explain` and load errors. */
export interface SourcePosition {
  readonly file: string
  readonly line: number
  readonly col: number
}

export interface CompiledGrant {
  readonly role: string
  /** Identity template with trust_domain, uid_domain and role already folded in. */
  readonly identity: readonly TemplatePart[]
  readonly tokenKinds: ReadonlySet<TokenKind>
  readonly defaultTokenKind: TokenKind
  /** IDTOKEN levels after HTCondor's implication expansion (a requested narrower level passes). */
  readonly authz: ReadonlySet<AuthzLevel>
  /** IDTOKEN levels issued when the request names none: the grant's list as written. */
  readonly authzDefaults: readonly AuthzLevel[]
  /** Compiled at load, unless the grant names the caller in a scope path (then `scopeTemplates`). */
  readonly scopes?: AllowedScopes
  /** The grant's scopes when one names the caller (`storage.create:/store/user/{preferred_username}`): rendered and compiled per request. */
  readonly scopeTemplates?: readonly (readonly TemplatePart[])[]
  /** Names a caller's value may not make, in a scope path or an identity's user part (SYSTEM_ACCOUNTS and the grant's reserved_names). */
  readonly reservedNames?: ReadonlySet<string>
  readonly audiences?: CompiledPatterns
  /** Used when the request names no audience: set only if the grant lists exactly one literal audience. */
  readonly defaultAudience?: readonly string[]
  /** Whether one token may carry several requested audiences (the grant's multiple_audiences). */
  readonly multipleAudiences: boolean
  readonly hosts?: CompiledPatterns
  /** The sites the grant binds, as written: the only source of the issued token's `ctb_site`. */
  readonly sites?: readonly string[]
  readonly params: ReadonlyMap<string, CompiledPatterns>
  /** Request parameters the identity template needs. */
  readonly requiredParams: readonly string[]
  readonly lifetime: { readonly default: number; readonly max: number }
  readonly profile: 'wlcg' | 'scitokens2'
  readonly upTo: boolean
  readonly directAttach: boolean
  /** Pilot enrolment (docs/pilots.md), when the grant allows it. */
  readonly pilot?: CompiledPilotGrant
  /** Host certificates from the pool CA, when the grant allows them (docs/pool-ca.md). */
  readonly certificate?: { readonly maxLifetime: number; readonly ipAddresses?: CompiledPatterns }
  /** The credds (`ctb_role`, and `ctb_site` when sites is set) that may fetch job tokens under this grant. */
  readonly fetchedBy?: { readonly roles: ReadonlySet<string>; readonly sites?: ReadonlySet<string>; readonly vaultReads: boolean }
}

export interface CompiledPilotGrant {
  readonly maxCount: number
  readonly enrolmentLifetime: { readonly default: number; readonly max: number }
  /** Each pilot token's lifetime before renewal; the job's end caps it further. */
  readonly tokenLifetime: number
  readonly tunneled: boolean
  /** Highest SLURM_RESTART_COUNT at which a pilot may still redeem (requeued and preempted jobs). */
  readonly maxRestarts: number
  /** The pilot identity with constants folded in; {site}, {enrolment}, {slurm_job_id} and {node} remain. */
  readonly identity: readonly TemplatePart[]
}

export interface CompiledMatch {
  readonly issuers: ReadonlySet<string>
  readonly subs?: ReadonlySet<string>
  readonly clientIds?: ReadonlySet<string>
  readonly groupsAnyOf?: readonly string[]
  readonly groupsAllOf?: readonly string[]
  readonly scopesAnyOf?: readonly string[]
  readonly scopesAllOf?: readonly string[]
}

export interface CompiledRule {
  readonly id: string
  readonly description?: string
  readonly source: SourcePosition
  readonly match: CompiledMatch
  /** Token grants by role (the admin grant is not among them). */
  readonly grants: ReadonlyMap<string, CompiledGrant>
  /** The rule grants the `admin` role (admin API access). */
  readonly admin: boolean
}

export interface RoleCandidate {
  readonly rule: CompiledRule
  readonly grant: CompiledGrant
}

/** The whole policy in effect: immutable, swapped as one value on reload. */
export interface Policy {
  /** All rules in evaluation order: files sorted by name, rules in file order. */
  readonly rules: readonly CompiledRule[]
  readonly byRole: ReadonlyMap<string, readonly RoleCandidate[]>
  readonly adminRules: readonly CompiledRule[]
  readonly context: PolicyContext
  readonly files: readonly string[]
  /** SHA-256 (hex) over the file names and bytes: which policy version decided, for audit. */
  readonly digest: string
}

/** A grant's scopes: compiled once, or kept as templates when one names the caller (the schema checked where). */
function compileGrantScopes(scopes: readonly string[] | undefined): { scopes?: AllowedScopes; scopeTemplates?: TemplatePart[][] } {
  if (!scopes) return {}
  if (!scopes.some((s) => s.includes('{'))) return { scopes: compileAllowedScopes(scopes) }
  return {
    scopeTemplates: scopes.map((s) => {
      const parsed = parseTemplate(s)
      if ('error' in parsed) throw new TypeError(`unvalidated scope reached compile: ${parsed.error}`)
      return parsed.parts
    }),
  }
}

function compileGrant(g: Grant, ctx: PolicyContext): CompiledGrant {
  const parsed = parseTemplate(g.identity!)
  if ('error' in parsed) throw new TypeError(`unvalidated identity reached compile: ${parsed.error}`)
  const constants = { trust_domain: ctx.trustDomain, uid_domain: ctx.uidDomain, role: g.role }
  const used = placeholdersOf(parsed.parts)
  const levels = (g.authz ?? []).map((a) => toAuthzLevel(a)!)
  const audiences = g.audiences?.map((a) => a.replaceAll('{trust_domain}', ctx.trustDomain).replaceAll('{uid_domain}', ctx.uidDomain))
  const literalAudiences = audiences?.filter((a) => !a.includes('*'))
  const kinds = g.token_kinds!
  return {
    role: g.role,
    identity: foldConstants(parsed.parts, constants),
    tokenKinds: new Set(kinds),
    defaultTokenKind: g.default_token_kind ?? kinds[0]!,
    authz: expandAuthz(levels),
    authzDefaults: [...new Set(levels)],
    ...compileGrantScopes(g.scopes),
    reservedNames: new Set([...SYSTEM_ACCOUNTS, ...(g.reserved_names ?? [])]),
    ...(audiences ? { audiences: compilePatterns(audiences) } : {}),
    ...(audiences?.length === 1 && literalAudiences?.length === 1 ? { defaultAudience: literalAudiences } : {}),
    multipleAudiences: g.multiple_audiences ?? false,
    ...(g.hosts ? { hosts: compilePatterns(g.hosts, { ignoreCase: true }) } : {}),
    ...(g.sites ? { sites: [...g.sites] } : {}),
    params: new Map(Object.entries(g.params ?? {}).map(([k, v]) => [k, compilePatterns(v)])),
    requiredParams: used.filter((p) => g.params?.[p] !== undefined),
    lifetime: { default: g.lifetime!.default, max: g.lifetime!.max },
    profile: g.profile ?? ctx.scitokenProfile,
    upTo: g.up_to ?? false,
    directAttach: g.direct_attach ?? false,
    ...(g.pilot ? { pilot: compilePilotGrant(g, constants) } : {}),
    ...(g.certificate ? {
      certificate: {
        maxLifetime: g.certificate.max_lifetime,
        ...(g.certificate.ip_addresses ? { ipAddresses: compilePatterns(g.certificate.ip_addresses) } : {}),
      },
    } : {}),
    ...(g.fetched_by ? {
      fetchedBy: { roles: new Set(g.fetched_by.roles), ...(g.fetched_by.sites ? { sites: new Set(g.fetched_by.sites) } : {}), vaultReads: g.fetched_by.vault_reads === true },
    } : {}),
  }
}

function compilePilotGrant(g: Grant, constants: Record<string, string>): CompiledPilotGrant {
  const p = g.pilot!
  const parsed = parseTemplate(p.identity ?? DEFAULT_PILOT_IDENTITY)
  if ('error' in parsed) throw new TypeError(`unvalidated pilot identity reached compile: ${parsed.error}`)
  return {
    maxCount: p.max_count,
    enrolmentLifetime: { ...p.enrolment_lifetime },
    tokenLifetime: p.token_lifetime ?? g.lifetime!.default,
    tunneled: p.tunneled ?? false,
    maxRestarts: p.max_restarts ?? DEFAULT_PILOT_MAX_RESTARTS,
    identity: foldConstants(parsed.parts, constants),
  }
}

function compileMatch(m: Rule['match']): CompiledMatch {
  return {
    issuers: new Set(m.issuer),
    ...(m.sub ? { subs: new Set(m.sub) } : {}),
    ...(m.client_id ? { clientIds: new Set(m.client_id) } : {}),
    ...(m.groups?.any_of ? { groupsAnyOf: m.groups.any_of } : {}),
    ...(m.groups?.all_of ? { groupsAllOf: m.groups.all_of } : {}),
    ...(m.scopes?.any_of ? { scopesAnyOf: m.scopes.any_of } : {}),
    ...(m.scopes?.all_of ? { scopesAllOf: m.scopes.all_of } : {}),
  }
}

/** Compiles validated rules (in evaluation order) into a Policy. */
export function compilePolicy(
  rules: readonly { rule: Rule; source: SourcePosition }[],
  ctx: PolicyContext,
  meta: { files: readonly string[]; digest: string },
): Policy {
  const compiled: CompiledRule[] = rules.map(({ rule, source }) => ({
    id: rule.id,
    ...(rule.description !== undefined ? { description: rule.description } : {}),
    source,
    match: compileMatch(rule.match),
    grants: new Map(rule.grants.filter((g) => g.role !== ADMIN_ROLE).map((g) => [g.role, compileGrant(g, ctx)])),
    admin: rule.grants.some((g) => g.role === ADMIN_ROLE),
  }))
  const byRole = new Map<string, RoleCandidate[]>()
  for (const rule of compiled) {
    for (const grant of rule.grants.values()) {
      const list = byRole.get(grant.role) ?? []
      list.push({ rule, grant })
      byRole.set(grant.role, list)
    }
  }
  return { rules: compiled, byRole, adminRules: compiled.filter((r) => r.admin), context: ctx, files: meta.files, digest: meta.digest }
}
