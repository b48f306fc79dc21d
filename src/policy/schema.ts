import { z } from 'zod'
import { DURATION_HINT, parseDuration } from '../lib/config_values.ts'
import { expandAuthz, type AuthzLevel } from '../issuance/authz.ts'
import { isHostPattern } from './patterns.ts'
import { htcondorLevelsOfScopes, isHierarchicalScope, parseScope, toAuthzLevel } from './scopes.ts'
import { BUILTIN_PLACEHOLDERS, HOST_PLACEHOLDERS, SITE_PLACEHOLDER, SUBJECT_PLACEHOLDERS, parseTemplate, placeholdersOf, userPartNamesCaller, type TemplatePart } from './template.ts'
import { asciiLower } from '../lib/ascii_case.ts'
import { DEFAULT_PILOT_IDENTITY, MAX_PILOT_COUNT, PILOT_IDENTITY_SEPARATORS, MAX_PILOT_RESTARTS, PILOT_AUTHZ, PILOT_TUNNEL_AUTHZ } from '../contract/pilot.ts'

/**
 * The zod schema of `policies/*.yaml`. Structural checks and every safety rule that can be decided
 * from one grant alone live here; checks that need broker configuration (lifetime caps, the default
 * SciToken profile) live in load.ts. See docs/policies.md for the format.
 * @see docs/htcondor-tokens.md §3.3, §3.4, §5.4; docs/iam-and-wlcg.md §1.2, §2.2
 */

export const TOKEN_KINDS = ['idtoken', 'scitoken', 'access_token'] as const
/** The role that only unlocks the admin API (policy explain, …); it never mints a token. */
export const ADMIN_ROLE = 'admin'
/** The only role allowed a `condor@…` identity (docs/htcondor-tokens.md §3.3, §3.4). */
export const CENTRAL_MANAGER_ROLE = 'central-manager'
/**
 * User names HTCondor's default security config trusts wholesale: `condor@*` (ALLOW_DAEMON, NEGOTIATOR,
 * ADMINISTRATOR), `root@*` (ADMINISTRATOR) and v9's `condor_pool@*`. Only the central manager may be condor.
 */
export const RESERVED_USERS: ReadonlySet<string> = new Set(['condor', 'condor_pool', 'root'])

/**
 * Account names no caller's value may make, in a scope path (`storage.create:/store/user/{preferred_username}`)
 * or an identity's user part (`{preferred_username}@{uid_domain}`): a storage element that maps a user
 * directory to the local account of that name would give the caller that account's area, and an execute node
 * sharing the UID_DOMAIN would run the caller's jobs as that account (policy/caller_names.ts). LSB Core 5.0 §23.2 lists root, bin and daemon as required and adm, lp, sync, shutdown, halt,
 * mail, news, uucp, operator, man and nobody as optional on every conforming system; condor and condor_pool
 * are HTCondor's (RESERVED_USERS). A site adds its own with a grant's `reserved_names`.
 */
export const SYSTEM_ACCOUNTS: ReadonlySet<string> = new Set([
  ...RESERVED_USERS, 'bin', 'daemon', 'adm', 'lp', 'sync', 'shutdown', 'halt', 'mail', 'news', 'uucp', 'operator', 'man', 'nobody',
])

/** The user part of an identity as HTCondor splits it (at the last `@`), ASCII lower-cased for RESERVED_USERS. */
export function identityUser(identity: string): string {
  const at = identity.lastIndexOf('@')
  return asciiLower(at < 0 ? identity : identity.slice(0, at))
}
/** Audience wildcards; never for daemon tokens (docs/htcondor-tokens.md §5.6). */
export const WILDCARD_AUDIENCES: ReadonlySet<string> = new Set(['ANY', 'https://wlcg.cern.ch/jwt/v1/any'])

/**
 * Longest identity the broker issues. HTCondor sets no limit, but an identity is spliced into ALLOW
 * lists, ClassAds and audit records, and none a template can produce legitimately comes near it.
 */
export const MAX_IDENTITY_LENGTH = 255

/** Pilot and startd roles (`pilot`, `startd`, `annex-pilot`, `startd-gpu`, …): no WRITE unless direct attach. */
export function isAttachRole(role: string): boolean {
  return /(^|-)(pilot|startd)(-|$)/.test(role)
}

const oneOrMany = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(item).min(1))

const NonBlank = z.string().min(1).regex(/^\S+$/, 'must not contain whitespace')

const Duration = z.preprocess(
  parseDuration,
  z.number({ error: `a lifetime is ${DURATION_HINT}` }).int().positive(),
)

/** `[a, b]` is shorthand for `{ any_of: [a, b] }`. */
const SetMatch = z.preprocess(
  (v) => (Array.isArray(v) || typeof v === 'string' ? { any_of: typeof v === 'string' ? [v] : v } : v),
  z.strictObject({
    any_of: z.array(NonBlank).min(1).optional(),
    all_of: z.array(NonBlank).min(1).optional(),
  }).refine((m) => m.any_of !== undefined || m.all_of !== undefined, 'give any_of, all_of or both'),
)

const MatchSchema = z.strictObject({
  /** Exact `iss` strings, trailing slash included: never normalised (docs/iam-and-wlcg.md §1.2). Required because `sub` is unique only per issuer. */
  issuer: oneOrMany(NonBlank),
  sub: oneOrMany(NonBlank).optional(),
  client_id: oneOrMany(NonBlank).optional(),
  groups: SetMatch.optional(),
  scopes: SetMatch.optional(),
})

/** A role name: also the `ctb_role` claim, so it must stay safe inside a ClassAd string. */
export const ROLE_NAME = /^[a-z][a-z0-9-]{0,62}$/

const Role = z.string().regex(ROLE_NAME, 'a role is lower-case letters, digits and dashes, starting with a letter')

const GRANT_TOKEN_FIELDS = ['identity', 'token_kinds', 'default_token_kind', 'authz', 'scopes', 'audiences', 'multiple_audiences', 'reserved_names', 'hosts', 'sites', 'params', 'lifetime', 'profile', 'up_to', 'direct_attach', 'pilot', 'certificate', 'fetched_by'] as const

/**
 * A site label: it ends up in the `ctb_site` claim and in `revoke --site`, so it is a plain name that is
 * safe inside a ClassAd string and inside an identity (no `@`, space or quote).
 */
const SiteName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a site is letters, digits, _ . -, starting with a letter or digit (at most 64)')

/**
 * A grant's pilot enrolment: callers of the rule may obtain enrolment credentials for the grant's site,
 * each redeemable by at most `max_count` pilots; the pilot tokens carry exactly the pilot levels.
 */
const PilotGrantSchema = z.strictObject({
  /** Most pilot tokens (node redemptions) one credential may yield. */
  max_count: z.number().int().min(1).max(MAX_PILOT_COUNT),
  /** How long a credential stays redeemable: the queue wait plus a margin. */
  enrolment_lifetime: z.strictObject({ default: Duration, max: Duration }),
  /** Lifetime of each pilot token before renewal (always also capped by the job's end); default: lifetime.default. */
  token_lifetime: Duration.optional(),
  /** The site's startds reach the pool through CCB: pilot tokens also carry DAEMON. */
  tunneled: z.boolean().optional(),
  /**
   * The pilot token's `sub`; must name {site}, {enrolment}, {slurm_job_id} and {node}, the first two before the
   * others and each followed by a separator (checkPilotIdentityShape).
   */
  identity: z.string().min(1).max(255).optional(),
  /**
   * How often one SLURM job may be restarted (SLURM_RESTART_COUNT) and its pilots still redeem; each redemption
   * still takes one of the credential's slots. Default DEFAULT_PILOT_MAX_RESTARTS.
   */
  max_restarts: z.number().int().min(0).max(MAX_PILOT_RESTARTS).optional(),
})

/**
 * A grant's host certificates from the pool CA (docs/pool-ca.md): callers of the rule may have the
 * grant's hosts certified for HTCondor's SSL authentication, for at most `max_lifetime`.
 */
const CertificateGrantSchema = z.strictObject({
  max_lifetime: Duration,
  /** IPv4 addresses (globs such as `10.1.*`) a certificate may also name; none unless listed. */
  ip_addresses: z.array(z.string().regex(/^[0-9.*]{1,15}$/, 'an IPv4 address or a glob of one (digits, dots, *)')).min(1).optional(),
})

/**
 * Which access points' credds may fetch the job tokens of credentials registered under this grant
 * (GET /v1/credentials/{user}/{provider}/token): the `ctb_role` of their broker-issued IDTOKEN and,
 * when `sites` is given, its `ctb_site`. Both claims come from the credd's own policy grant.
 */
const FetchedBySchema = z.strictObject({
  roles: oneOrMany(Role),
  sites: oneOrMany(SiteName).optional(),
  /**
   * Also serve these tokens on the Vault-compatible listener. A Vault read is a fetch by some access
   * point's Vault credmon that the broker knows only by the user's Vault token, never by role or site, so
   * it is off unless the grant says so (docs/job-credentials.md).
   */
  vault_reads: z.boolean().optional(),
})

const GrantSchema = z.strictObject({
  role: Role,
  description: z.string().optional(),
  /** Template for the issued `sub`, e.g. `schedd-{host_short}@aps.{trust_domain}`. */
  identity: z.string().min(1).max(MAX_IDENTITY_LENGTH).optional(),
  token_kinds: oneOrMany(z.enum(TOKEN_KINDS)).optional(),
  default_token_kind: z.enum(TOKEN_KINDS).optional(),
  /** HTCondor levels for IDTOKENs (`READ` or `condor:/READ`). */
  authz: z.array(z.string()).optional(),
  /** Scopes for SciTokens/WLCG tokens and IAM access tokens. */
  scopes: z.array(z.string()).optional(),
  audiences: z.array(NonBlank).min(1).optional(),
  /**
   * Lets one request name several of the grant's audiences for one token. Off: one audience per token, because
   * a token every listed service accepts, stolen at one of them, replays at the others.
   */
  multiple_audiences: z.boolean().optional(),
  /** Names, beyond SYSTEM_ACCOUNTS, that a caller's value may not make in a scope path or the identity's user part (site accounts). */
  reserved_names: z.array(z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,127}$/, 'a reserved_names entry is a plain lower-case name (letters, digits, _ . -)')).min(1).optional(),
  hosts: z.array(z.string()).min(1).optional(),
  /**
   * The site(s) this grant's callers belong to: the only source of `ctb_site` and `{site}`. A request may
   * name one of them (`site`); naming another is refused; naming none picks the only one, if there is one.
   */
  sites: oneOrMany(SiteName).optional(),
  /** Request parameters usable as placeholders, each with the glob patterns its value must match. */
  params: z.record(z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, 'a parameter name is lower-case letters, digits and _'), z.array(z.string().min(1)).min(1)).optional(),
  lifetime: z.strictObject({ default: Duration, max: Duration }).optional(),
  profile: z.enum(['wlcg', 'scitokens2']).optional(),
  /** Trim over-wide scope or lifetime requests to the grant instead of refusing them. */
  up_to: z.boolean().optional(),
  /** Allows WRITE on a pilot/startd role, for annex-style direct attach to a schedd. */
  direct_attach: z.boolean().optional(),
  /** SLURM pilot enrolment for this role (docs/pilots.md): checked by checkPilotGrant. */
  pilot: PilotGrantSchema.optional(),
  /** Host certificates from the pool CA for the grant's hosts: checked by decideCertificate. */
  certificate: CertificateGrantSchema.optional(),
  /** Job credentials: which credds may fetch tokens for providers naming this role (docs/job-credentials.md). */
  fetched_by: FetchedBySchema.optional(),
}).superRefine(checkGrant)

export type Grant = z.output<typeof GrantSchema>

type Issue = (path: (string | number)[], message: string) => void

function checkGrant(g: Grant, ctx: z.RefinementCtx): void {
  const issue: Issue = (path, message) => ctx.addIssue({ code: 'custom', path, message })
  if (g.role === ADMIN_ROLE) {
    for (const k of GRANT_TOKEN_FIELDS) {
      if (g[k] !== undefined) issue([k], `the admin role only opens the admin API and mints no token; "${k}" does not apply`)
    }
    return
  }
  for (const k of ['identity', 'token_kinds', 'lifetime'] as const) {
    if (g[k] === undefined) issue([k], `"${k}" is required for role ${g.role}`)
  }
  if (!g.identity || !g.token_kinds || !g.lifetime) return
  const kinds = new Set(g.token_kinds)
  const jwtKinds = kinds.has('scitoken') || kinds.has('access_token')
  if (g.default_token_kind && !kinds.has(g.default_token_kind)) issue(['default_token_kind'], `"${g.default_token_kind}" is not in token_kinds`)

  const levels = checkAuthz(g, kinds, issue)
  checkScopes(g, kinds, jwtKinds, issue)
  const attach = isAttachRole(g.role)
  if (attach && !g.direct_attach) {
    // DAEMON (which implies WRITE) is what a tunneled pilot site needs for CCB; checkPilotGrant allows exactly that.
    const tunnelDaemon = g.pilot?.tunneled === true ? levels.filter((l) => l !== PILOT_TUNNEL_AUTHZ) : levels
    if (expandAuthz(tunnelDaemon).has('WRITE')) {
      issue(['authz'], `WRITE (or a level implying it) on role ${g.role} needs direct_attach: true; pilots and startds only advertise (docs/htcondor-tokens.md §3.4)`)
    }
    if (g.scopes && htcondorLevelsOfScopes(g.scopes).has('WRITE')) {
      issue(['scopes'], `these scopes give HTCondor WRITE on role ${g.role}, which needs direct_attach: true (docs/htcondor-tokens.md §3.4, §5.4)`)
    }
  }
  if (g.direct_attach && !attach) issue(['direct_attach'], 'direct_attach applies only to pilot and startd roles')
  checkIdentity(g, kinds, issue)
  checkAudiences(g, jwtKinds, issue)
  if (g.sites && new Set(g.sites).size !== g.sites.length) issue(['sites'], 'a site is listed twice')
  g.hosts?.forEach((h, i) => {
    if (!isHostPattern(h)) issue(['hosts', i], `"${h}" is not a lower-case host pattern (letters, digits, dots, dashes and *; not a bare *)`)
  })
  if (g.lifetime.default > g.lifetime.max) issue(['lifetime', 'default'], `default lifetime ${g.lifetime.default}s exceeds max ${g.lifetime.max}s`)
  if (g.pilot) checkPilotGrant(g, levels, issue)
  if (g.certificate && !g.hosts) issue(['certificate'], 'a certificate names hosts: list the hosts it may name under hosts:')
  if (g.fetched_by) {
    if (!jwtKinds) issue(['fetched_by'], 'fetched_by is for job credentials: token_kinds must include access_token or scitoken')
    if (new Set(g.fetched_by.roles).size !== g.fetched_by.roles.length) issue(['fetched_by', 'roles'], 'a role is listed twice')
    if (g.fetched_by.sites && new Set(g.fetched_by.sites).size !== g.fetched_by.sites.length) issue(['fetched_by', 'sites'], 'a site is listed twice')
  }
}

/** Placeholders a pilot identity may use: the three that name the pilot, and the constants. */
const PILOT_IDENTITY_PLACEHOLDERS: ReadonlySet<string> = new Set(['site', 'enrolment', 'slurm_job_id', 'node', 'trust_domain', 'uid_domain', 'role'])

/** The one-line fix for a pilot identity a provisioned ALLOW entry could not keep apart from other groups'. */
export const PILOT_IDENTITY_FIX = `put {site} and {enrolment} before {slurm_job_id} and {node}, each followed by one of ${PILOT_IDENTITY_SEPARATORS.split('').join(' ')} (e.g. ${DEFAULT_PILOT_IDENTITY}, the default: drop pilot.identity to use it)`

/**
 * A provisioned collector admits a pilot group by the identity's fixed head and a `*` (docs/provisioning.md).
 * HTCondor's `*` matches any run of characters, so the head must end each field with a character no site name or
 * enrolment id holds: under `pilot-{site}-…` the head `pilot-hpc-` also admits site hpc-b's pilots, and without
 * {enrolment} it admits every cluster's pilots at the site.
 */
function checkPilotIdentityShape(parts: readonly TemplatePart[]): string | undefined {
  const firstPerPilot = parts.findIndex((p) => 'placeholder' in p && (p.placeholder === 'slurm_job_id' || p.placeholder === 'node'))
  for (const field of ['site', 'enrolment']) {
    const at = parts.findIndex((p) => 'placeholder' in p && p.placeholder === field)
    if (at < 0) return `a pilot identity must contain {${field}}, so a collector can admit one site's enrolment alone: ${PILOT_IDENTITY_FIX}`
    const next = parts[at + 1]
    const bounded = next !== undefined && 'literal' in next && PILOT_IDENTITY_SEPARATORS.includes(next.literal[0]!)
    if (at > firstPerPilot || !bounded || placeholdersOf(parts).filter((n) => n === field).length > 1) {
      return `a pilot identity's {${field}} must come once, before {slurm_job_id} and {node}, and be followed by one of ${PILOT_IDENTITY_SEPARATORS.split('').join(' ')}, or an ALLOW entry for one group admits another's pilots: ${PILOT_IDENTITY_FIX}`
    }
  }
  // What render's entry needs besides (condor_config.ts pilotAllowEntryOf), so a policy that loads can be provisioned:
  // the entry's `*` starts where the job and node do, after a field end; and an ALLOW list splits names at commas and
  // spaces, reads `*` as its wildcard and `/` as the host part. (`"` `\` `$`, which no revocation can carry, are
  // refused at redemption, with the identity's length: pilot_exchange.ts.)
  const bad = parts.find((p) => 'literal' in p && UNLISTABLE.test(p.literal))
  if (bad) return `a pilot identity cannot hold ${JSON.stringify((bad as { literal: string }).literal.match(UNLISTABLE)![0])}: an ALLOW list cannot name it`
  const before = parts[firstPerPilot - 1]
  if (before === undefined || !('literal' in before) || !PILOT_IDENTITY_SEPARATORS.includes(before.literal.at(-1)!)) {
    return `a pilot identity's {${(parts[firstPerPilot] as { placeholder: string }).placeholder}} must follow one of ${PILOT_IDENTITY_SEPARATORS.split('').join(' ')} directly, where a collector's ALLOW entry for the group puts its *: ${PILOT_IDENTITY_FIX}`
  }
  return undefined
}

/** Characters a pilot identity's literal text may not hold (checkPilotIdentityShape). */
const UNLISTABLE = /[*,\s/]/

function checkPilotGrant(g: Grant, levels: readonly AuthzLevel[], issue: Issue): void {
  const p = g.pilot!
  if (!isAttachRole(g.role)) issue(['pilot'], `pilot enrolment applies to pilot and startd roles, not ${g.role}`)
  if (!g.sites) issue(['pilot'], 'pilot enrolment binds a site: list it under sites:')
  if (!g.token_kinds?.includes('idtoken')) issue(['pilot'], 'pilot tokens are IDTOKENs: token_kinds must include idtoken')
  const want = new Set<string>([...PILOT_AUTHZ, ...(p.tunneled ? [PILOT_TUNNEL_AUTHZ] : [])])
  const have = new Set<string>(levels)
  if (have.size !== want.size || [...want].some((l) => !have.has(l))) {
    issue(['authz'], `a pilot grant's authz is exactly ${[...want].join(', ')}${p.tunneled ? '' : ' (DAEMON only with tunneled: true)'}`)
  }
  if (p.enrolment_lifetime.default > p.enrolment_lifetime.max) issue(['pilot', 'enrolment_lifetime', 'default'], `default ${p.enrolment_lifetime.default}s exceeds max ${p.enrolment_lifetime.max}s`)
  if (p.token_lifetime !== undefined && g.lifetime && p.token_lifetime > g.lifetime.max) issue(['pilot', 'token_lifetime'], `token_lifetime ${p.token_lifetime}s exceeds the grant's max lifetime ${g.lifetime.max}s`)
  const parsed = parseTemplate(p.identity ?? DEFAULT_PILOT_IDENTITY)
  if ('error' in parsed) { issue(['pilot', 'identity'], parsed.error); return }
  const used = placeholdersOf(parsed.parts)
  for (const ph of used) if (!PILOT_IDENTITY_PLACEHOLDERS.has(ph)) issue(['pilot', 'identity'], `a pilot identity may use {site}, {enrolment}, {slurm_job_id}, {node} and constants, not {${ph}}`)
  for (const ph of ['site', 'slurm_job_id', 'node']) if (!used.includes(ph)) issue(['pilot', 'identity'], `a pilot identity must contain {${ph}}, so each pilot can be told apart and revoked`)
  const shape = used.includes('slurm_job_id') && used.includes('node') ? checkPilotIdentityShape(parsed.parts) : undefined
  if (shape) issue(['pilot', 'identity'], shape)
  const { user, hasAt, emptyDomain } = literalUser(parsed.parts)
  if (!hasAt || emptyDomain) issue(['pilot', 'identity'], 'a pilot identity must be user@domain')
  if (user !== undefined && RESERVED_USERS.has(asciiLower(user))) issue(['pilot', 'identity'], `identity ${user}@… is reserved`)
}

function checkAuthz(g: Grant, kinds: Set<string>, issue: Issue): AuthzLevel[] {
  const levels: AuthzLevel[] = []
  g.authz?.forEach((a, i) => {
    const l = toAuthzLevel(a)
    if (l) levels.push(l)
    else issue(['authz', i], `unknown HTCondor authorization level "${a}"; expected READ, WRITE, NEGOTIATOR, ADMINISTRATOR, CONFIG, DAEMON, ADVERTISE_STARTD, ADVERTISE_SCHEDD or ADVERTISE_MASTER`)
  })
  if (kinds.has('idtoken') && !g.authz?.length) {
    issue(['authz'], 'an idtoken grant needs at least one authz level: an IDTOKEN without condor:/ scopes is unrestricted (docs/htcondor-tokens.md §3.2, §3.4)')
  }
  if (!kinds.has('idtoken') && g.authz !== undefined) issue(['authz'], 'authz applies to idtoken only; SciTokens carry condor:/LEVEL in scopes')
  return levels
}

function checkScopes(g: Grant, kinds: Set<string>, jwtKinds: boolean, issue: Issue): void {
  g.scopes?.forEach((s, i) => {
    if (s === 'compute.*') return
    const template = checkScopeTemplate(s)
    if (template !== undefined) { if ('error' in template) issue(['scopes', i], template.error); return }
    const p = parseScope(s)
    if ('error' in p) issue(['scopes', i], p.error)
  })
  const identity = g.identity === undefined ? undefined : parseTemplate(g.identity)
  const identityNamesCaller = identity !== undefined && 'parts' in identity && userPartNamesCaller(identity.parts)
  if (g.reserved_names !== undefined && !g.scopes?.some((s) => s.includes('{')) && !identityNamesCaller) {
    issue(['reserved_names'], 'reserved_names applies only to a grant that names the caller in a scope path or in the user part of its identity ({sub}, {preferred_username} or {client_id} in a path; those, {host}, {host_short} or a request parameter in the user part)')
  }
  if (jwtKinds && !g.scopes?.length) issue(['scopes'], 'scitoken and access_token grants need at least one scope')
  if (!jwtKinds && g.scopes !== undefined) issue(['scopes'], 'scopes apply to scitoken and access_token; IDTOKENs take authz')
  if (kinds.has('scitoken') && g.scopes?.length) {
    const hasCondor = g.scopes.some((s) => /^condor:\//i.test(s))
    const hasCompute = g.scopes.some((s) => s.startsWith('compute.'))
    // A storage-only grant (jobs reading and writing at a storage element) is a SciToken for storage, not
    // for HTCondor: it needs path scopes instead. Without any of the three the token authorizes nothing.
    const hasStorage = g.scopes.some((s) => { const p = parseScope(s); return !('error' in p) && p.kind === 'path' })
    if (!hasCondor && !hasCompute && !hasStorage) {
      issue(['scopes'], 'a scitoken grant needs a condor:/, compute.* or storage path scope (storage.read:/path): without one the token authorizes nothing (docs/htcondor-tokens.md §5.4)')
    } else if (g.profile === 'scitokens2' && hasCompute && !hasCondor) {
      issue(['scopes'], 'HTCondor does not translate compute.* in SciTokens 2.0 tokens; add condor:/ scopes or use profile wlcg (docs/htcondor-tokens.md §5.4)')
    }
  }
}

/**
 * A grant scope naming the caller (`storage.create:/store/user/{preferred_username}`): undefined when the
 * scope has no brace, else whether it is a path scope whose placeholders are the caller's own values and
 * stand in the path only. The name part is the capability and never the caller's to choose.
 */
function checkScopeTemplate(s: string): { ok: true } | { error: string } | undefined {
  if (!/[{}]/.test(s)) return undefined
  const parsed = parseTemplate(s)
  // parseTemplate speaks of identity templates; here the admin wrote a scope, so say that.
  if ('error' in parsed) return { error: parsed.error.replace(/ in template "/, ' in scope "') }
  const bad = placeholdersOf(parsed.parts).find((p) => !(SUBJECT_PLACEHOLDERS as readonly string[]).includes(p))
  if (bad !== undefined) return { error: `scope "${s}" may name only {sub}, {preferred_username} or {client_id}, not {${bad}}` }
  const pathStart = s.indexOf(':/')
  if (pathStart <= 0 || s.indexOf('{') < pathStart) return { error: `scope "${s}": a placeholder may stand only in the path of a path scope (storage.read:/store/user/{preferred_username})` }
  // A value's end is known only where a '/' or the path's end follows it: in /home/{preferred_username}-{sub},
  // alice-x with sub y and alice with sub x-y both get /home/alice-x-y, one caller's directory another's.
  const unbounded = parsed.parts.findIndex((p, i) => 'placeholder' in p && !endsSegment(parsed.parts[i + 1]))
  if (unbounded >= 0) return { error: `scope "${s}": {${(parsed.parts[unbounded] as { placeholder: string }).placeholder}} must end its path segment (followed by "/" or nothing), so that no two callers' values give one path` }
  // A sample value shows whether the rendered text is a valid path scope, as the caller's value will be checked to keep it.
  const sample = parsed.parts.map((p) => ('literal' in p ? p.literal : 'x')).join('')
  const p = parseScope(sample)
  if ('error' in p) return { error: p.error.replace(sample, s) }
  if (p.kind !== 'path' || !isHierarchicalScope(p.name)) return { error: `scope "${s}": placeholders are for storage and SciTokens path scopes only` }
  return { ok: true }
}

/** Whether what follows a placeholder in a scope path closes its segment: nothing, or a literal starting with '/'. */
function endsSegment(next: TemplatePart | undefined): boolean {
  return next === undefined || ('literal' in next && next.literal.startsWith('/'))
}

/** The user part of a template if it is wholly literal (placeholder values never contain `@`). */
function literalUser(parts: readonly TemplatePart[]): { user?: string; hasAt: boolean; emptyDomain: boolean } {
  let at = -1
  parts.forEach((p, i) => { if ('literal' in p && p.literal.includes('@')) at = i })
  if (at < 0) return { hasAt: false, emptyDomain: false }
  const atPart = parts[at] as { literal: string }
  const cut = atPart.literal.lastIndexOf('@')
  const emptyDomain = cut === atPart.literal.length - 1 && at === parts.length - 1
  const before = parts.slice(0, at)
  if (before.some((p) => 'placeholder' in p)) return { hasAt: true, emptyDomain }
  return { user: before.map((p) => (p as { literal: string }).literal).join('') + atPart.literal.slice(0, cut), hasAt: true, emptyDomain }
}

function checkIdentity(g: Grant, kinds: Set<string>, issue: Issue): void {
  const parsed = parseTemplate(g.identity!)
  if ('error' in parsed) { issue(['identity'], parsed.error); return }
  const declared = Object.keys(g.params ?? {})
  for (const p of declared) {
    if (p === SITE_PLACEHOLDER) {
      issue(['params', p], 'site is never taken from the request: it drives revoke --site, so the grant binds it; move the values to sites:')
      continue
    }
    if (BUILTIN_PLACEHOLDERS.has(p)) issue(['params', p], `"${p}" is a built-in placeholder and cannot be a request parameter`)
    g.params![p]!.forEach((pat, j) => {
      if (!/^[A-Za-z0-9_.*-]+$/.test(pat)) issue(['params', p, j], `"${pat}" is not a value pattern (letters, digits, _ . - and *)`)
    })
  }
  const used = placeholdersOf(parsed.parts)
  for (const ph of used) {
    if (!BUILTIN_PLACEHOLDERS.has(ph) && !declared.includes(ph)) {
      issue(['identity'], `unknown placeholder {${ph}}; use one of ${[...BUILTIN_PLACEHOLDERS].map((b) => `{${b}}`).join(', ')}, or declare {${ph}} under params with the values allowed`)
    }
    if (ph === SITE_PLACEHOLDER && !g.sites) issue(['identity'], '{site} is the site the grant binds; list it under sites:')
    if ((HOST_PLACEHOLDERS as readonly string[]).includes(ph) && !g.hosts) {
      issue(['identity'], `{${ph}} comes from the caller's request; restrict it with hosts:`)
    }
  }
  const { user, hasAt, emptyDomain } = literalUser(parsed.parts)
  if (user !== undefined && RESERVED_USERS.has(asciiLower(user)) && g.role !== CENTRAL_MANAGER_ROLE) {
    issue(['identity'], `identity ${user}@… is allowed for the ${CENTRAL_MANAGER_ROLE} role only: HTCondor's default security config trusts condor@* and root@* as daemons and administrators (docs/htcondor-tokens.md §3.4)`)
  }
  if (kinds.has('idtoken') && (!hasAt || emptyDomain)) {
    issue(['identity'], 'an IDTOKEN identity must be user@domain: HTCondor takes sub verbatim and splits it at the last @ (docs/htcondor-tokens.md §1.3)')
  }
}

function checkAudiences(g: Grant, jwtKinds: boolean, issue: Issue): void {
  if (g.multiple_audiences !== undefined && !jwtKinds) issue(['multiple_audiences'], 'multiple_audiences applies to scitoken and access_token: an IDTOKEN has no aud claim')
  if (jwtKinds && !g.audiences) {
    issue(['audiences'], 'scitoken and access_token grants need audiences: aud is mandatory in SciTokens 2.0 and WLCG tokens (docs/htcondor-tokens.md §5.2)')
  }
  g.audiences?.forEach((a, i) => {
    if (WILDCARD_AUDIENCES.has(a)) issue(['audiences', i], `wildcard audience "${a}" is never issued; name the service (docs/htcondor-tokens.md §5.6)`)
    else if (/^\**$/.test(a.replace(/\{[^}]*\}/g, ''))) issue(['audiences', i], `audience pattern "${a}" would match any service`)
    const parsed = parseTemplate(a)
    if ('error' in parsed) { issue(['audiences', i], parsed.error); return }
    for (const ph of placeholdersOf(parsed.parts)) {
      if (ph !== 'trust_domain' && ph !== 'uid_domain') issue(['audiences', i], `audiences may use {trust_domain} and {uid_domain} only, not {${ph}}`)
    }
  })
}

const RuleSchema = z.strictObject({
  /** Unique across all policy files; named in audit records and `policy explain`. */
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a rule id is letters, digits, _ . -, starting with a letter or digit'),
  description: z.string().optional(),
  match: MatchSchema,
  grants: z.array(GrantSchema).min(1),
}).superRefine((r, ctx) => {
  const seen = new Set<string>()
  r.grants.forEach((g, i) => {
    if (seen.has(g.role)) ctx.addIssue({ code: 'custom', path: ['grants', i, 'role'], message: `role ${g.role} is granted twice in rule ${r.id}` })
    seen.add(g.role)
  })
  checkSeveralIams(r, ctx)
})

/** Placeholders whose value one IAM assigns and another may assign to someone else. */
const PER_IAM_PLACEHOLDERS: ReadonlySet<string> = new Set(SUBJECT_PLACEHOLDERS)

/**
 * A sub is unique only within its IAM (docs/iam-and-wlcg.md §2.1), a username or client id no more: in a
 * rule trusting several IAMs, `sub`/`client_id` would admit a namesake at the other IAM, and an identity
 * built from them would make two callers one HTCondor user. One IAM written with and without its trailing
 * slash (§1.2) counts once.
 */
function checkSeveralIams(r: { match: { issuer: string[]; sub?: string[] | undefined; client_id?: string[] | undefined }; grants: Grant[] }, ctx: z.RefinementCtx): void {
  const iams = new Set(r.match.issuer.map((i) => i.replace(/\/$/, '')))
  if (iams.size < 2) return
  const why = 'this rule trusts several IAMs, where the same value may belong to different callers; write one rule per issuer'
  for (const key of ['sub', 'client_id'] as const) {
    if (r.match[key] !== undefined) ctx.addIssue({ code: 'custom', path: ['match', key], message: `${key} cannot be matched: ${why}` })
  }
  r.grants.forEach((g, i) => {
    const parsed = g.identity !== undefined ? parseTemplate(g.identity) : undefined
    if (!parsed || 'error' in parsed) return
    const used = placeholdersOf(parsed.parts).filter((p) => PER_IAM_PLACEHOLDERS.has(p))
    if (used.length > 0) ctx.addIssue({ code: 'custom', path: ['grants', i, 'identity'], message: `{${used[0]}} cannot make the identity: ${why}` })
    g.scopes?.forEach((s, j) => {
      const t = parseTemplate(s)
      const p = 'error' in t ? [] : placeholdersOf(t.parts).filter((x) => PER_IAM_PLACEHOLDERS.has(x))
      if (p.length > 0) ctx.addIssue({ code: 'custom', path: ['grants', i, 'scopes', j], message: `{${p[0]}} cannot name a path: ${why}` })
    })
  })
}

/** One policy file. */
export const PolicyFileSchema = z.strictObject({
  version: z.literal(1, { error: 'version: 1 is the only policy format' }),
  description: z.string().optional(),
  rules: z.array(RuleSchema),
})

export type PolicyFile = z.output<typeof PolicyFileSchema>
export type Rule = PolicyFile['rules'][number]
