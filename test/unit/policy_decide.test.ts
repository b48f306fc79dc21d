import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import type { Policy, PolicyContext } from '../../src/policy/compile.ts'
import { authorizeAdmin, decide } from '../../src/policy/decide.ts'
import type { Decision, DecisionRequest } from '../../src/policy/decision.ts'
import { explain } from '../../src/policy/explain.ts'
import { loadPolicies, loadPolicyDir } from '../../src/policy/load.ts'
import { callerMatches, callerMismatches } from '../../src/policy/match_caller.ts'
import { tempDir } from '../support/tmp.ts'

const ISS = 'https://iam.example.org/'
const CTX: PolicyContext = {
  trustDomain: 'pool.example.org',
  uidDomain: 'users.example.org',
  vars: { IAM_ISSUER: ISS },
  scitokenProfile: 'wlcg',
  maxLifetime: { idtoken: 7 * 86400, scitoken: 6 * 3600 },
}
const JTI = '0123456789abcdef0123456789abcdef'
const fixedJti = { newJti: () => JTI }

function subject(over: Partial<VerifiedSubject> = {}): VerifiedSubject {
  return { iss: ISS, sub: 'a1b2c3d4', groups: [], scopes: [], exp: 2_000_000_000, claims: {}, ...over }
}

/** Callers as IAM would describe them: service accounts by client_id, people by group. */
const CALLERS = {
  cm: subject({ sub: 'svc-cm', client_id: 'ctb-cloud-a-cm' }),
  ap: subject({ sub: 'svc-ap', client_id: 'ctb-cloud-a-ap' }),
  provisioner: subject({ sub: 'svc-prov', client_id: 'ctb-cloud-a-provisioner' }),
  factory: subject({ sub: 'svc-factory', client_id: 'ctb-hpc-b-pilot-factory' }),
  annexUser: subject({ sub: 'u-annex', groups: ['/htc/annex-users'] }),
  alice: subject({ sub: 'u-alice', groups: ['/htc/users'], preferred_username: 'alice' }),
  aliceNoSlash: subject({ iss: 'https://iam.example.org', sub: 'u-alice', groups: ['/htc/users'], preferred_username: 'alice' }),
  userCondor: subject({ sub: 'u-c', groups: ['/htc/users'], preferred_username: 'condor' }),
  userRoot: subject({ sub: 'u-r', groups: ['/htc/users'], preferred_username: 'Root' }),
  userAt: subject({ sub: 'u-x', groups: ['/htc/users'], preferred_username: 'eve@pool.example.org' }),
  userNoName: subject({ sub: 'u-n', groups: ['/htc/users'] }),
  monitor: subject({ sub: 'svc-mon', client_id: 'ctb-monitoring' }),
  admin: subject({ sub: 'u-admin', groups: ['/ctb-admins'] }),
  stranger: subject({ sub: 'u-stranger', groups: ['/other'] }),
} as const
type Caller = keyof typeof CALLERS

type Ask = Omit<DecisionRequest, 'subject' | 'role' | 'audience'> & { audience?: string[] }
type Expect =
  | { allow: true; identity: string; scopes: string[]; lifetime?: number; tokenKind?: string; audience?: string[]; trimmed?: string[]; site?: string | null }
  | { allow: false; error: string; reason: RegExp }

const shipped: Policy = loadPolicies('policies', CTX)

function ask(caller: Caller, role: string, a: Ask = {}): DecisionRequest {
  return { subject: CALLERS[caller], role, ...a, audience: a.audience ?? [] }
}

function check(d: Decision, e: Expect): void {
  if (e.allow) {
    expect(d).toMatchObject({ allow: true, identity: e.identity, scopes: e.scopes })
    if (!d.allow) return
    if (e.lifetime !== undefined) expect(d.lifetime).toBe(e.lifetime)
    if (e.tokenKind !== undefined) expect(d.tokenKind).toBe(e.tokenKind)
    if (e.audience !== undefined) expect(d.audience).toEqual(e.audience)
    // null: the grant binds no site, so the decision must carry none.
    if (e.site !== undefined) expect(d.site).toBe(e.site ?? undefined)
    expect(d.trimmed).toEqual(e.trimmed)
    expect(d.jti).toBe(JTI)
  } else {
    expect(d).toMatchObject({ allow: false, error: e.error })
    if (!d.allow) expect(d.reason).toMatch(e.reason)
  }
}

const CM = ['NEGOTIATOR', 'ADVERTISE_MASTER', 'READ']
const SCHEDD = ['ADVERTISE_SCHEDD', 'ADVERTISE_MASTER', 'READ']
const STARTD = ['ADVERTISE_STARTD', 'ADVERTISE_MASTER', 'READ']
const COMPUTE = ['compute.read', 'compute.create', 'compute.modify', 'compute.cancel']
const AP_AUD = 'condor://ap1.cloud-a.example.org:9618'

// caller | role | request | expected: each row reads like a line of policy.
const ROWS: [Caller, string, Ask, Expect][] = [
  // central manager: the only condor@ identity
  ['cm', 'central-manager', { host: 'cm.cloud-a.example.org' }, { allow: true, identity: 'condor@pool.example.org', scopes: CM, lifetime: 86400, audience: ['pool.example.org'], site: 'cloud-a' }],
  ['cm', 'central-manager', { host: 'cm2.cloud-a.example.org' }, { allow: false, error: 'unauthorized_client', reason: /host cm2\.cloud-a\.example\.org is not allowed/ }],
  ['cm', 'central-manager', {}, { allow: false, error: 'invalid_request', reason: /host is required/ }],
  ['cm', 'schedd', { host: 'ap1.cloud-a.example.org' }, { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'schedd'/ }],
  // access point: schedd and credd, per host, under aps.
  ['ap', 'schedd', { host: 'ap1.cloud-a.example.org' }, { allow: true, identity: 'schedd-ap1@aps.pool.example.org', scopes: SCHEDD, site: 'cloud-a' }],
  ['ap', 'schedd', { host: 'AP1.Cloud-A.example.org' }, { allow: true, identity: 'schedd-ap1@aps.pool.example.org', scopes: SCHEDD }],
  ['ap', 'schedd', { host: 'ap1.cloud-a.example.org', scopes: ['condor:/READ'] }, { allow: true, identity: 'schedd-ap1@aps.pool.example.org', scopes: ['READ'] }],
  ['ap', 'schedd', { host: 'ap1.cloud-a.example.org', scopes: ['READ', 'WRITE'] }, { allow: false, error: 'invalid_scope', reason: /WRITE exceeds what role schedd allows/ }],
  ['ap', 'schedd', { host: 'ap1.cloud-a.example.org', scopes: ['condor:/OWNER'] }, { allow: false, error: 'invalid_scope', reason: /not an HTCondor authorization level/ }],
  ['ap', 'schedd', { host: 'ap1.cloud-a.example.org', audience: ['other.pool'] }, { allow: false, error: 'invalid_target', reason: /trust domain pool\.example\.org only/ }],
  ['ap', 'schedd', { host: 'ap1.cloud-a.example.org', audience: ['pool.example.org'] }, { allow: true, identity: 'schedd-ap1@aps.pool.example.org', scopes: SCHEDD }],
  ['ap', 'schedd', { host: 'ap1.cloud-a.example.org', lifetime: 8 * 86400 }, { allow: false, error: 'invalid_request', reason: /lifetime 691200s exceeds the maximum 604800s/ }],
  ['ap', 'schedd', { host: 'ap1.cloud-a.example.org', tokenKind: 'scitoken' }, { allow: false, error: 'invalid_request', reason: /not issued as scitoken/ }],
  ['ap', 'credd', { host: 'ap1.cloud-a.example.org' }, { allow: true, identity: 'credd-ap1@aps.pool.example.org', scopes: ['DAEMON'], site: 'cloud-a' }],
  // DAEMON implies WRITE and READ: asking for the narrower level is allowed
  ['ap', 'credd', { host: 'ap1.cloud-a.example.org', scopes: ['WRITE'] }, { allow: true, identity: 'credd-ap1@aps.pool.example.org', scopes: ['WRITE'] }],
  ['ap', 'startd', { host: 'ep-1.cloud-a.example.org' }, { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'startd'/ }],
  // cloud execute points
  ['provisioner', 'startd', { host: 'ep-17.cloud-a.example.org' }, { allow: true, identity: 'startd-cloud-a-ep-17@eps.pool.example.org', scopes: STARTD, lifetime: 86400, site: 'cloud-a' }],
  ['provisioner', 'startd', { host: 'ep-17.cloud-a.example.org', params: { site: 'cloud-a' } }, { allow: true, identity: 'startd-cloud-a-ep-17@eps.pool.example.org', scopes: STARTD, site: 'cloud-a' }],
  ['provisioner', 'startd', { host: 'ep-17.cloud-a.example.org', params: { site: 'hpc-b' } }, { allow: false, error: 'unauthorized_client', reason: /site=hpc-b is not allowed for role startd: this rule binds cloud-a/ }],
  ['provisioner', 'startd', { host: 'ep-17.cloud-a.example.org', lifetime: 3600 }, { allow: true, identity: 'startd-cloud-a-ep-17@eps.pool.example.org', scopes: STARTD, lifetime: 3600 }],
  ['provisioner', 'startd', { host: 'ep-17.hpc-b.example.org' }, { allow: false, error: 'unauthorized_client', reason: /host ep-17\.hpc-b\.example\.org is not allowed/ }],
  ['provisioner', 'startd', { host: 'ep-17.cloud-a.example.org', scopes: ['WRITE'] }, { allow: false, error: 'invalid_scope', reason: /WRITE exceeds/ }],
  ['provisioner', 'startd', { host: 'ep_1..x' }, { allow: false, error: 'invalid_request', reason: /not a valid host name/ }],
  // SLURM pilots: site and job id from the request, constrained by params; up_to trims
  ['factory', 'pilot', { params: { site: 'hpc-b', slurm_job_id: '4242' } }, { allow: true, identity: 'pilot-hpc-b-4242@pilots.pool.example.org', scopes: STARTD, lifetime: 172800, site: 'hpc-b' }],
  // the site is the grant's: naming none gets the rule's only site, naming another is refused
  ['factory', 'pilot', { params: { slurm_job_id: '4242' } }, { allow: true, identity: 'pilot-hpc-b-4242@pilots.pool.example.org', scopes: STARTD, site: 'hpc-b' }],
  ['factory', 'pilot', { params: { site: 'hpc-b', slurm_job_id: '4242' }, lifetime: 30 * 86400 }, { allow: true, identity: 'pilot-hpc-b-4242@pilots.pool.example.org', scopes: STARTD, lifetime: 604800, trimmed: ['lifetime'] }],
  ['factory', 'pilot', { params: { site: 'hpc-b', slurm_job_id: '4242' }, scopes: ['READ', 'WRITE'] }, { allow: true, identity: 'pilot-hpc-b-4242@pilots.pool.example.org', scopes: ['READ'], trimmed: ['scope'] }],
  ['factory', 'pilot', { params: { site: 'hpc-b', slurm_job_id: '4242' }, scopes: ['WRITE'] }, { allow: false, error: 'invalid_scope', reason: /none of the requested levels/ }],
  ['factory', 'pilot', { params: { site: 'cloud-a', slurm_job_id: '4242' } }, { allow: false, error: 'unauthorized_client', reason: /site=cloud-a is not allowed/ }],
  ['factory', 'pilot', { params: { site: 'hpc-b"x', slurm_job_id: '4242' } }, { allow: false, error: 'invalid_request', reason: /site must be letters/ }],
  ['factory', 'pilot', { params: { site: 'hpc-b' } }, { allow: false, error: 'invalid_request', reason: /parameter slurm_job_id is required/ }],
  ['factory', 'pilot', { params: { site: 'hpc-b', slurm_job_id: '42@evil' } }, { allow: false, error: 'invalid_request', reason: /slurm_job_id must be letters/ }],
  ['factory', 'startd', { host: 'ep-1.cloud-a.example.org' }, { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'startd'/ }],
  // annex pilots may WRITE (direct_attach) and get a unique identity per token
  ['annexUser', 'annex-pilot', { params: { slurm_job_id: '99' } }, { allow: true, identity: 'pilot-annex-99-01234567@pilots.pool.example.org', scopes: [...STARTD, 'WRITE'], site: 'hpc-b' }],
  ['annexUser', 'pilot', { params: { site: 'hpc-b', slurm_job_id: '99' } }, { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'pilot'/ }],
  // submit users: IDTOKEN by default, WLCG token on request
  ['alice', 'submit-user', {}, { allow: true, identity: 'alice@users.example.org', scopes: ['READ', 'WRITE'], lifetime: 3600, tokenKind: 'idtoken' }],
  ['alice', 'submit-user', { tokenKind: 'scitoken', audience: [AP_AUD] }, { allow: true, identity: 'alice@users.example.org', scopes: COMPUTE, tokenKind: 'scitoken', audience: [AP_AUD] }],
  ['alice', 'submit-user', { tokenKind: 'scitoken', audience: [AP_AUD], scopes: ['compute.read'] }, { allow: true, identity: 'alice@users.example.org', scopes: ['compute.read'] }],
  ['alice', 'submit-user', { tokenKind: 'scitoken', audience: [AP_AUD], scopes: ['compute.read', 'storage.read:/data'] }, { allow: true, identity: 'alice@users.example.org', scopes: ['compute.read'], trimmed: ['scope'] }],
  ['alice', 'submit-user', { tokenKind: 'scitoken', audience: ['condor://ap1.evil.example.org:9618'] }, { allow: false, error: 'invalid_target', reason: /audience 'condor:\/\/ap1\.evil\.example\.org:9618' is not allowed/ }],
  ['alice', 'submit-user', { tokenKind: 'scitoken', audience: ['condor://ap1.cloud-a.example.org/x:9618'] }, { allow: false, error: 'invalid_target', reason: /is not allowed/ }],
  ['alice', 'submit-user', { tokenKind: 'scitoken' }, { allow: false, error: 'invalid_target', reason: /an audience is required/ }],
  ['alice', 'submit-user', { tokenKind: 'access_token', audience: [AP_AUD] }, { allow: false, error: 'invalid_request', reason: /not issued as access_token/ }],
  ['alice', 'submit-user', { lifetime: 86400 }, { allow: true, identity: 'alice@users.example.org', scopes: ['READ', 'WRITE'], lifetime: 21600, trimmed: ['lifetime'] }],
  ['alice', 'job', {}, { allow: true, identity: 'alice@users.example.org', scopes: ['READ', 'WRITE'], lifetime: 1200, site: null }],
  ['alice', 'job', { params: { site: 'cloud-a' } }, { allow: false, error: 'unauthorized_client', reason: /site=cloud-a is not allowed for role job: this rule binds no site/ }],
  ['alice', 'job', { lifetime: 7 * 3600 }, { allow: false, error: 'invalid_request', reason: /lifetime 25200s exceeds the maximum 21600s for role job/ }],
  ['alice', 'job', { lifetime: 0 }, { allow: false, error: 'invalid_request', reason: /positive whole number/ }],
  ['alice', 'job', { scopes: ['ADMINISTRATOR'] }, { allow: false, error: 'invalid_scope', reason: /ADMINISTRATOR exceeds/ }],
  ['aliceNoSlash', 'job', {}, { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'job'/ }],
  // the default-security trap: a user called condor or root never becomes condor@/root@
  ['userCondor', 'job', {}, { allow: false, error: 'unauthorized_client', reason: /identity condor@users\.example\.org is reserved/ }],
  ['userRoot', 'submit-user', {}, { allow: false, error: 'unauthorized_client', reason: /identity Root@users\.example\.org is reserved/ }],
  ['userAt', 'job', {}, { allow: false, error: 'unauthorized_client', reason: /preferred_username cannot be used in an HTCondor identity/ }],
  ['userNoName', 'job', {}, { allow: false, error: 'unauthorized_client', reason: /has no preferred_username/ }],
  // monitoring, admin, strangers
  ['monitor', 'monitoring', {}, { allow: true, identity: 'monitor@pool.example.org', scopes: ['READ'], site: null }],
  ['monitor', 'monitoring', { scopes: ['WRITE'] }, { allow: false, error: 'invalid_scope', reason: /WRITE exceeds/ }],
  ['admin', 'admin', {}, { allow: false, error: 'invalid_request', reason: /never issued as a token/ }],
  ['admin', 'schedd', { host: 'ap1.cloud-a.example.org' }, { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'schedd'/ }],
  ['stranger', 'submit-user', {}, { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'submit-user' to this caller/ }],
  ['stranger', 'no-such-role', {}, { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'no-such-role' to this caller/ }],
]

describe('decide() with the shipped example policies (cloud-a + hpc-b)', () => {
  it.each(ROWS)('%s asks for %s %j → %j', (caller, role, a, e) => {
    check(decide(shipped, ask(caller, role, a), fixedJti), e)
  })

  it.each(ROWS)('explain() reaches the same decision: %s %s %j', (caller, role, a) => {
    const req = ask(caller, role, a)
    const ex = explain(shipped, req, fixedJti)
    expect(ex.decision).toEqual(decide(shipped, req, fixedJti))
    expect(ex.rules.map((r) => r.ruleId)).toEqual(shipped.rules.map((r) => r.id))
    expect(ex.rules.filter((r) => r.decisive).length).toBe(ex.decision.ruleId ? 1 : 0)
    if (ex.decision.ruleId) expect(ex.rules.find((r) => r.decisive)!.ruleId).toBe(ex.decision.ruleId)
  })

  it.each(Object.keys(CALLERS) as Caller[])('callerMatches and callerMismatches agree for %s on every rule', (caller) => {
    for (const rule of shipped.rules) {
      expect(callerMatches(rule.match, CALLERS[caller])).toBe(callerMismatches(rule.match, CALLERS[caller]).length === 0)
    }
  })

  it('mints a fresh jti per decision and puts its first 8 hex digits in {jti8}', () => {
    const req = ask('annexUser', 'annex-pilot', { params: { slurm_job_id: '7' } })
    const a = decide(shipped, req)
    const b = decide(shipped, req)
    if (!a.allow || !b.allow) throw new Error('expected allow')
    expect(a.jti).toMatch(/^[0-9a-f]{32}$/)
    expect(a.jti).not.toBe(b.jti)
    expect(a.identity).toBe(`pilot-annex-7-${a.jti!.slice(0, 8)}@pilots.pool.example.org`)
  })

  it('authorizeAdmin admits /ctb-admins members only', () => {
    expect(authorizeAdmin(shipped, CALLERS.admin)).toEqual({ allow: true, ruleId: 'broker-admins' })
    expect(authorizeAdmin(shipped, CALLERS.alice)).toMatchObject({ allow: false })
    expect(authorizeAdmin(shipped, { ...CALLERS.admin, iss: 'https://iam.example.org' })).toMatchObject({ allow: false })
  })
})

/** Loads one inline policy file through the real loader. */
function policyFrom(yaml: string, ctx: PolicyContext = CTX): Policy {
  const dir = tempDir()
  writeFileSync(join(dir, 'p.yaml'), yaml)
  const r = loadPolicyDir(dir, ctx)
  if (!r.ok) throw new Error(r.issues.map((i) => `${i.line}:${i.col} ${i.message}`).join('\n'))
  return r.policy
}

const INLINE = policyFrom(`
version: 1
rules:
  - id: narrow-first
    match: { issuer: "${ISS}", groups: { all_of: [/vo, /vo/prod] }, scopes: { any_of: [compute.read] } }
    grants:
      - role: reader
        identity: "reader-{client_id}-{host_short}@{role}.{trust_domain}"
        token_kinds: [scitoken, access_token]
        scopes: [condor:/READ, "storage.read:/store/data/", "read:/public", compute.read]
        audiences: ["https://*.se.example.org", "condor://{trust_domain}:9618"]
        hosts: ["*.wn.example.org", login.example.org]
        lifetime: { default: 10m, max: 1h }
        profile: wlcg
  - id: wide-second
    match: { issuer: "${ISS}", sub: [robot-1] }
    grants:
      - role: reader
        identity: "robot-{sub}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: [condor:/READ, "storage.read:/"]
        audiences: ["https://storage.example.org"]
        lifetime: { default: 10m, max: 1h }
`)

const prodCaller = subject({ sub: 'robot-1', client_id: 'wf', groups: ['/vo', '/vo/prod'], scopes: ['compute.read'] })
const SE = 'https://se1.se.example.org'

describe('site binding: the label revoke --site cuts comes from the grant', () => {
  const SITES = policyFrom(`
version: 1
rules:
  - id: two-sites
    match: { issuer: "${ISS}", client_id: [factory, multi] }
    grants:
      - role: pilot
        identity: "pilot-{site}-{jti8}@pilots.{trust_domain}"
        sites: [hpc-b, hpc-c]
        token_kinds: [idtoken]
        authz: [READ]
        lifetime: { default: 1h, max: 1d }
  - id: one-site
    match: { issuer: "${ISS}", client_id: [factory, other] }
    grants:
      - role: pilot
        identity: "pilot-{site}-{jti8}@pilots.{trust_domain}"
        sites: hpc-d
        token_kinds: [idtoken]
        authz: [READ]
        lifetime: { default: 1h, max: 1d }
`)
  const factory = subject({ sub: 'f', client_id: 'factory' })
  const other = subject({ sub: 'o', client_id: 'other' })
  const multi = subject({ sub: 'm', client_id: 'multi' })
  const pilot = (who: VerifiedSubject, site?: string): DecisionRequest =>
    ({ subject: who, role: 'pilot', audience: [], ...(site !== undefined ? { params: { site } } : {}) })

  it.each([
    ['one of several sites, named', factory, 'hpc-c', { allow: true, site: 'hpc-c', identity: 'pilot-hpc-c-01234567@pilots.pool.example.org', ruleId: 'two-sites' }],
    ['a site only a later rule binds: that rule decides', factory, 'hpc-d', { allow: true, site: 'hpc-d', ruleId: 'one-site' }],
    ['the only site of the matching rule, when none is named', other, undefined, { allow: true, site: 'hpc-d', identity: 'pilot-hpc-d-01234567@pilots.pool.example.org' }],
    ['another site than the rule binds', other, 'hpc-b', { allow: false, error: 'unauthorized_client', reason: 'site=hpc-b is not allowed for role pilot: this rule binds hpc-d' }],
    ['any word as a site', factory, 'anything', { allow: false, error: 'unauthorized_client', ruleId: 'two-sites' }],
    // A rule binding several sites cannot pick one for the caller.
    ['none named where the only matching rule binds several', multi, undefined, { allow: false, error: 'invalid_request', reason: 'site is required for role pilot: this rule binds hpc-b, hpc-c', ruleId: 'two-sites' }],
    // Rules are tried in order and the first that allows wins: silence gets the later rule's single site,
    // which the policy binds to this caller too.
    ['none named, a later rule binds one site', factory, undefined, { allow: true, site: 'hpc-d', ruleId: 'one-site' }],
  ] as const)('%s', (_name, who, site, expected) => {
    expect(decide(SITES, pilot(who, site), fixedJti)).toMatchObject(expected)
  })
})

describe('decide() semantics on an inline policy', () => {
  const ROWS2: [string, VerifiedSubject, Ask, Expect][] = [
    ['default scopes and template with client_id, host_short, role', prodCaller, { host: 'n1.wn.example.org', audience: [SE] },
      { allow: true, identity: 'reader-wf-n1@reader.pool.example.org', scopes: ['condor:/READ', 'storage.read:/store/data/', 'read:/public', 'compute.read'], tokenKind: 'scitoken', lifetime: 600 }],
    ['path-prefix narrowing below a directory grant', prodCaller, { host: 'n1.wn.example.org', audience: [SE], scopes: ['storage.read:/store/data/run1/f.root'] },
      { allow: true, identity: 'reader-wf-n1@reader.pool.example.org', scopes: ['storage.read:/store/data/run1/f.root'] }],
    ['a sibling path is not below the grant: next rule grants /', prodCaller, { host: 'n1.wn.example.org', audience: ['https://storage.example.org'], scopes: ['storage.read:/store/datax'] },
      { allow: true, identity: 'robot-robot-1@users.example.org', scopes: ['storage.read:/store/datax'] }],
    ['first rule refuses, second rule allows: first allowing rule wins', prodCaller, { host: 'n1.wn.example.org', audience: ['https://storage.example.org'] },
      { allow: true, identity: 'robot-robot-1@users.example.org', scopes: ['condor:/READ', 'storage.read:/'] }],
    ['wider scope than any rule allows: the first matching rule\'s error', prodCaller, { host: 'n1.wn.example.org', audience: [SE], scopes: ['storage.create:/store/data'] },
      { allow: false, error: 'invalid_scope', reason: /storage\.create:\/store\/data' exceeds what role reader allows/ }],
    ['.. in a requested path is refused, not resolved', prodCaller, { host: 'n1.wn.example.org', audience: [SE], scopes: ['storage.read:/store/data/../../etc'] },
      { allow: false, error: 'invalid_scope', reason: /normalised/ }],
    ['condor:/ levels are case-insensitive and normalised', prodCaller, { host: 'n1.wn.example.org', audience: [SE], scopes: ['condor:/read'] },
      { allow: true, identity: 'reader-wf-n1@reader.pool.example.org', scopes: ['condor:/READ'] }],
    ['audience template {trust_domain} is folded at load', prodCaller, { host: 'login.example.org', audience: ['condor://pool.example.org:9618'] },
      { allow: true, identity: 'reader-wf-login@reader.pool.example.org', scopes: ['condor:/READ', 'storage.read:/store/data/', 'read:/public', 'compute.read'] }],
    ['glob * does not cross "/": no audience smuggling', prodCaller, { host: 'n1.wn.example.org', audience: ['https://evil.test/x.se.example.org'] },
      { allow: false, error: 'invalid_target', reason: /is not allowed for role reader/ }],
    ['host glob * does not match an empty label', prodCaller, { host: 'wn.example.org', audience: [SE] },
      { allow: false, error: 'unauthorized_client', reason: /host wn\.example\.org is not allowed/ }],
    ['one bad audience among good ones refuses all', prodCaller, { host: 'n1.wn.example.org', audience: [SE, 'https://x.example.org'] },
      { allow: false, error: 'invalid_target', reason: /'https:\/\/x\.example\.org' is not allowed/ }],
    ['caller lacks one of all_of groups', subject({ sub: 'x', client_id: 'wf', groups: ['/vo'], scopes: ['compute.read'] }), { host: 'n1.wn.example.org', audience: [SE] },
      { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'reader'/ }],
    ['caller token lacks the any_of scope', subject({ sub: 'x', client_id: 'wf', groups: ['/vo', '/vo/prod'], scopes: ['storage.read:/'] }), { host: 'n1.wn.example.org', audience: [SE] },
      { allow: false, error: 'unauthorized_client', reason: /no policy rule grants role 'reader'/ }],
    ['caller without client_id cannot fill {client_id}', subject({ sub: 'x', groups: ['/vo', '/vo/prod'], scopes: ['compute.read'] }), { host: 'n1.wn.example.org', audience: [SE] },
      { allow: false, error: 'unauthorized_client', reason: /has no client_id/ }],
  ]
  it.each(ROWS2)('%s', (_name, who, a, e) => {
    const req: DecisionRequest = { subject: who, role: 'reader', ...a, audience: a.audience ?? [] }
    check(decide(INLINE, req, fixedJti), e)
    expect(explain(INLINE, req, fixedJti).decision).toEqual(decide(INLINE, req, fixedJti))
  })

  it('reports the SciToken profile of the grant, and none for IDTOKENs', () => {
    // The broker's default (CTX) is wlcg: the grant's own scitokens2 must win.
    const sciTokens2 = policyFrom(`
version: 1
rules:
  - id: reader
    match: { issuer: "${ISS}", sub: [robot-1] }
    grants:
      - role: reader
        identity: "robot-{sub}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: [condor:/READ, "read:/public"]
        audiences: ["${SE}"]
        hosts: ["*.wn.example.org"]
        lifetime: { default: 10m, max: 1h }
        profile: scitokens2
`)
    const d = decide(sciTokens2, { subject: prodCaller, role: 'reader', host: 'n1.wn.example.org', audience: [SE] }, fixedJti)
    expect(d).toMatchObject({ allow: true, profile: 'scitokens2', host: 'n1.wn.example.org' })
    const i = decide(shipped, { subject: CALLERS.alice, role: 'job', audience: [] }, fixedJti)
    expect(i.allow && i.profile).toBe(undefined)
  })

  it('explain lists caller mismatches with every reason', () => {
    const ex = explain(INLINE, { subject: subject({ iss: 'https://other/', sub: 'nobody' }), role: 'reader', audience: [] }, fixedJti)
    expect(ex.decision).toMatchObject({ allow: false, error: 'unauthorized_client' })
    expect(ex.rules[0]).toMatchObject({ ruleId: 'narrow-first', outcome: 'caller-mismatch', source: expect.stringMatching(/p\.yaml:4:5$/) })
    expect(ex.rules[0]!.reasons.join('\n')).toMatch(/issuer 'https:\/\/other\/' is not 'https:\/\/iam\.example\.org\/'[\s\S]*not in the groups '\/vo', '\/vo\/prod'[\s\S]*none of the scopes 'compute\.read'/)
    expect(ex.rules[1]!.reasons.join('\n')).toMatch(/sub 'nobody' is not 'robot-1'/)
  })
})

describe('storage-only SciToken grants (job tokens for a storage element)', () => {
  const STORAGE = policyFrom(`
version: 1
rules:
  - id: job-storage
    match: { issuer: "${ISS}", groups: [/vo] }
    grants:
      - role: job-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/user", "storage.create:/store/user", "storage.modify:/store/user"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
`)
  const user = subject({ sub: 'u-1', groups: ['/vo'], preferred_username: 'carol' })

  it('loads and issues the storage scopes, narrowed to a path below the grant', () => {
    const all = decide(STORAGE, { subject: user, role: 'job-storage', audience: ['https://se.example.org'] }, fixedJti)
    check(all, { allow: true, identity: 'carol@users.example.org', scopes: ['storage.read:/store/user', 'storage.create:/store/user', 'storage.modify:/store/user'], tokenKind: 'scitoken' })
    const narrowed = decide(STORAGE, { subject: user, role: 'job-storage', audience: ['https://se.example.org'], scopes: ['storage.read:/store/user/carol'] }, fixedJti)
    check(narrowed, { allow: true, identity: 'carol@users.example.org', scopes: ['storage.read:/store/user/carol'] })
  })

  it('refuses a path outside the grant', () => {
    const d = decide(STORAGE, { subject: user, role: 'job-storage', audience: ['https://se.example.org'], scopes: ['storage.read:/store/other'] }, fixedJti)
    expect(d.allow).toBe(false)
  })
})

describe('per-caller storage paths: {sub}, {preferred_username}, {client_id} in a grant scope path', () => {
  // WLCG storage scopes are capabilities (docs/iam-and-wlcg.md §2.1: with one present, relying parties
  // authorize on it alone), so a grant of storage.create:/store/user lets every user write every other
  // user's files. The caller's own directory has to be part of the grant.
  const OWN = policyFrom(`
version: 1
rules:
  - id: own-area
    match: { issuer: "${ISS}", groups: [/vo] }
    grants:
      - role: job-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/data", "storage.create:/store/user/{preferred_username}", "read:/home/u-{sub}"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
`)
  const carol = subject({ sub: 'c1', groups: ['/vo'], preferred_username: 'carol' })
  const req = (s: VerifiedSubject, scopes?: string[]): DecisionRequest => ({ subject: s, role: 'job-storage', audience: ['https://se.example.org'], ...(scopes ? { scopes } : {}) })

  it("issues the caller's own path by default", () => {
    check(decide(OWN, req(carol), fixedJti), { allow: true, identity: 'carol@users.example.org', scopes: ['storage.read:/store/data', 'storage.create:/store/user/carol', 'read:/home/u-c1'] })
  })

  it('allows a path below the caller\'s own, not another user\'s nor the parent', () => {
    check(decide(OWN, req(carol, ['storage.create:/store/user/carol/run1']), fixedJti), { allow: true, identity: 'carol@users.example.org', scopes: ['storage.create:/store/user/carol/run1'] })
    for (const s of ['storage.create:/store/user/bob', 'storage.create:/store/user', 'storage.create:/store/user/carolx', 'read:/home/u-c2']) {
      check(decide(OWN, req(carol, [s]), fixedJti), { allow: false, error: 'invalid_scope', reason: /exceeds/ })
    }
  })

  it("explains a refused path with the caller's own paths, which the grant text does not show", () => {
    const e = explain(OWN, req(carol, ['storage.create:/store/user/bob']), fixedJti)
    const trace = e.rules.find((t) => t.ruleId === 'own-area')!
    expect(trace.outcome).toBe('denied')
    // Rendered by hand from the grant for carol (sub c1).
    expect(trace.reasons.join(' ')).toContain('storage.create:/store/user/carol')
    expect(trace.reasons.join(' ')).toContain('read:/home/u-c1')
  })

  it('never issues the placeholder text itself', () => {
    check(decide(OWN, req(carol, ['storage.create:/store/user/{preferred_username}']), fixedJti), { allow: false, error: 'invalid_scope', reason: /./ })
  })

  it('refuses a caller without the claim, or whose value would leave its directory', () => {
    check(decide(OWN, req(subject({ sub: 'n1', groups: ['/vo'], preferred_username: undefined })), fixedJti), { allow: false, error: 'unauthorized_client', reason: /preferred_username/ })
    for (const name of ['..', '.hidden', 'a/b', 'a b', 'é']) {
      // No identity check comes first: the scope is rendered before the identity is.
      const d = decide(OWN, req(subject({ sub: 'x1', groups: ['/vo'], preferred_username: name })), fixedJti)
      expect(d).toMatchObject({ allow: false, error: 'unauthorized_client' })
    }
  })

  it('refuses at load a placeholder outside the path, an unknown one, or a stray brace', () => {
    const grant = (scope: string) => `
version: 1
rules:
  - id: r
    match: { issuer: "${ISS}", groups: [/vo] }
    grants:
      - role: job-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/data", "${scope}"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
`
    const twoIams = grant('storage.read:/home/{sub}').replace(`issuer: "${ISS}"`, `issuer: ["${ISS}", "https://other-iam.example.org/"]`).replace('identity: "{preferred_username}@{uid_domain}"', 'identity: "user@{uid_domain}"')
    expect(() => policyFrom(twoIams)).toThrow(/\{sub\} cannot name a path/)
    for (const bad of ['storage.{sub}:/x', '{sub}:/x', 'storage.read:/home/{host}', 'storage.read:/home/{nope}', 'storage.read:/home/{sub', 'wlcg.groups:/vo/{sub}', 'compute.{sub}']) {
      expect(() => policyFrom(grant(bad)), bad).toThrow(/scope/)
    }
  })
})

describe('per-caller storage paths: system accounts and case', () => {
  // A storage element that maps /store/user/<name> to the local account <name> (XRootD with a user
  // prefix, a POSIX-backed SE) would hand an IAM user called "daemon" the daemon account's area. The
  // identity's user part is not the issue here (it is built from sub), only the path.
  const policy = (extra = '') => policyFrom(`
version: 1
rules:
  - id: own-area
    match: { issuer: "${ISS}", groups: [/vo] }
    grants:
      - role: job-storage
        identity: "u-{sub}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.create:/store/user/{preferred_username}"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
${extra}`)
  const who = (name: string) => subject({ sub: 's1', groups: ['/vo'], preferred_username: name })
  const ask = (_p: Policy, name: string): DecisionRequest => ({ subject: who(name), role: 'job-storage', audience: ['https://se.example.org'] })

  // LSB Core 5.0 §23.2 names root, bin and daemon as required and adm, lp, sync, shutdown, halt, mail, news,
  // uucp, operator, man and nobody as optional accounts; condor and condor_pool are HTCondor's own.
  it.each(['root', 'bin', 'daemon', 'adm', 'lp', 'sync', 'shutdown', 'halt', 'mail', 'news', 'uucp', 'operator', 'man', 'nobody', 'condor', 'condor_pool'])('refuses %s as a path name', (name) => {
    expect(decide(policy(), ask(policy(), name), fixedJti)).toMatchObject({ allow: false, error: 'unauthorized_client', reason: `the caller's preferred_username '${name}' is a reserved account name and cannot name a path in the scopes of role job-storage` })
  })

  it('refuses a name with an upper-case letter, so that no two callers differ only by case (Root, Alice)', () => {
    for (const name of ['Root', 'DAEMON', 'Alice']) {
      expect(decide(policy(), ask(policy(), name), fixedJti)).toMatchObject({ allow: false, error: 'unauthorized_client', reason: `the caller's preferred_username '${name}' has upper-case letters and cannot name a path in the scopes of role job-storage (two callers would differ only by case)` })
    }
  })

  it('refuses the names a grant adds under reserved_names, and issues any other', () => {
    const p = policy('        reserved_names: [cmsprod, xrootd]\n')
    expect(decide(p, ask(p, 'cmsprod'), fixedJti)).toMatchObject({ allow: false, error: 'unauthorized_client', reason: /'cmsprod' is a reserved account name/ })
    expect(decide(p, ask(p, 'xrootd'), fixedJti)).toMatchObject({ allow: false, error: 'unauthorized_client' })
    expect(decide(p, ask(p, 'alice'), fixedJti)).toMatchObject({ allow: true, scopes: ['storage.create:/store/user/alice'] })
    expect(decide(policy(), ask(policy(), 'cmsprod'), fixedJti)).toMatchObject({ allow: true, scopes: ['storage.create:/store/user/cmsprod'] })
  })

  it('refuses a value that completes a reserved name after a literal prefix in its segment', () => {
    // The placeholder must end its segment but may follow text in it: in /store/user/d{preferred_username}
    // the caller "aemon" gets the directory daemon (hand-concatenated), the account LSB Core 5.0 §23.2 requires.
    const prefixed = (extra = '') => policyFrom(`
version: 1
rules:
  - id: own-area
    match: { issuer: "${ISS}", groups: [/vo] }
    grants:
      - role: job-storage
        identity: "u-{sub}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.create:/store/user/d{preferred_username}"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
${extra}`)
    expect(decide(prefixed(), ask(prefixed(), 'aemon'), fixedJti)).toMatchObject({ allow: false, error: 'unauthorized_client', reason: /'daemon'.*reserved account name/ })
    const site = prefixed('        reserved_names: [dcache]\n')
    expect(decide(site, ask(site, 'cache'), fixedJti)).toMatchObject({ allow: false, error: 'unauthorized_client', reason: /'dcache'.*reserved account name/ })
    // Not reserved once rendered: d + daemon is ddaemon, nobody's account.
    expect(decide(prefixed(), ask(prefixed(), 'daemon'), fixedJti)).toMatchObject({ allow: true, scopes: ['storage.create:/store/user/ddaemon'] })
  })

  it('refuses at load reserved_names on a grant whose scopes name no caller, or a name that is not plain lower case', () => {
    expect(() => policy('        reserved_names: [Cmsprod]\n')).toThrow(/reserved_names/)
    expect(() => policy('        reserved_names: ["a/b"]\n')).toThrow(/reserved_names/)
    expect(() => policyFrom(`
version: 1
rules:
  - id: fixed
    match: { issuer: "${ISS}", groups: [/vo] }
    grants:
      - role: job-storage
        identity: "reader@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/data"]
        audiences: ["https://se.example.org"]
        reserved_names: [cmsprod]
        lifetime: { default: 20m, max: 1h }
`)).toThrow(/reserved_names applies only to a grant that names the caller in a scope path or in the user part of its identity/)
  })
})

describe('per-caller identities: system accounts and case', () => {
  // With identity "{preferred_username}@{uid_domain}", an execute node sharing the UID_DOMAIN runs the
  // caller's jobs as the local account named before the @: an IAM user called daemon would run as daemon.
  const member = (name: string, over: Partial<VerifiedSubject> = {}) => subject({ sub: 's1', groups: ['/htc/users'], preferred_username: name, ...over })
  const AP = 'condor://ap1.cloud-a.example.org:9618'

  // LSB Core 5.0 §23.2: root, bin, daemon required; adm, lp, sync, shutdown, halt, mail, news, uucp, operator,
  // man, nobody optional. root, condor and condor_pool are refused before this rule, as HTCondor's own (RESERVED_USERS).
  it.each(['bin', 'daemon', 'adm', 'lp', 'sync', 'shutdown', 'halt', 'mail', 'news', 'uucp', 'operator', 'man', 'nobody'])('refuses %s as the user of an IDTOKEN identity', (name) => {
    expect(decide(shipped, { subject: member(name), role: 'job', audience: [] }, fixedJti)).toMatchObject({
      allow: false, error: 'unauthorized_client',
      reason: `the caller's preferred_username '${name}' is a reserved account name and cannot name the user of the identity of role job`,
    })
  })

  it('refuses a reserved name as the sub of a SciToken, which a mapfile turns into a local user', () => {
    expect(decide(shipped, { subject: member('daemon'), role: 'submit-user', tokenKind: 'scitoken', audience: [AP] }, fixedJti)).toMatchObject({
      allow: false, error: 'unauthorized_client', reason: /preferred_username 'daemon' is a reserved account name/,
    })
  })

  it('still serves alice, by IDTOKEN and SciToken', () => {
    expect(decide(shipped, { subject: member('alice'), role: 'job', audience: [] }, fixedJti)).toMatchObject({ allow: true, identity: 'alice@users.example.org' })
    expect(decide(shipped, { subject: member('alice'), role: 'submit-user', tokenKind: 'scitoken', audience: [AP] }, fixedJti)).toMatchObject({ allow: true, identity: 'alice@users.example.org' })
  })

  it('refuses an upper-case caller value in the user part (Alice and alice would be one account where lookups fold case)', () => {
    expect(decide(shipped, { subject: member('Alice'), role: 'job', audience: [] }, fixedJti)).toMatchObject({
      allow: false, error: 'unauthorized_client',
      reason: `the caller's preferred_username 'Alice' has upper-case letters and cannot name the user of the identity of role job (two callers would differ only by case)`,
    })
  })

  const grant = (identity: string, extra = '') => policyFrom(`
version: 1
rules:
  - id: people
    match: { issuer: "${ISS}", groups: [/htc/users] }
    grants:
      - role: job
        identity: "${identity}"
        token_kinds: [idtoken]
        authz: [READ, WRITE]
        lifetime: { default: 20m, max: 1h }
${extra}`)

  it('refuses a value that a literal prefix completes into a reserved name, and the same value where it does not', () => {
    // u + ucp is uucp (hand-concatenated), an LSB Core 5.0 §23.2 account; u + daemon is udaemon, nobody's.
    const p = grant('u{preferred_username}@{uid_domain}')
    expect(decide(p, { subject: member('ucp'), role: 'job', audience: [] }, fixedJti)).toMatchObject({
      allow: false, error: 'unauthorized_client',
      reason: `the caller's preferred_username 'ucp' would make the user 'uucp', a reserved account name, and cannot name the user of the identity of role job`,
    })
    expect(decide(p, { subject: member('daemon'), role: 'job', audience: [] }, fixedJti)).toMatchObject({ allow: true, identity: 'udaemon@users.example.org' })
  })

  it('reads the whole user part, whatever follows the value in it', () => {
    // {preferred_username}-cms: "nobody" gives nobody-cms, not an account; with reserved_names [lp-cms], "lp" gives that one.
    const p = grant('{preferred_username}-cms@{uid_domain}', '        reserved_names: [lp-cms]\n')
    expect(decide(p, { subject: member('nobody'), role: 'job', audience: [] }, fixedJti)).toMatchObject({ allow: true, identity: 'nobody-cms@users.example.org' })
    expect(decide(p, { subject: member('lp'), role: 'job', audience: [] }, fixedJti)).toMatchObject({ allow: false, error: 'unauthorized_client', reason: /would make the user 'lp-cms', a reserved account name/ })
  })

  it('refuses a reserved {sub} too, and a grant\'s reserved_names, which an identity naming the caller may now carry', () => {
    expect(decide(grant('{sub}@{uid_domain}'), { subject: member('alice', { sub: 'nobody' }), role: 'job', audience: [] }, fixedJti)).toMatchObject({
      allow: false, error: 'unauthorized_client', reason: /the caller's sub 'nobody' is a reserved account name/,
    })
    const p = grant('{preferred_username}@{uid_domain}', '        reserved_names: [cmsprod]\n')
    expect(decide(p, { subject: member('cmsprod'), role: 'job', audience: [] }, fixedJti)).toMatchObject({ allow: false, error: 'unauthorized_client', reason: /'cmsprod' is a reserved account name/ })
    expect(decide(p, { subject: member('alice'), role: 'job', audience: [] }, fixedJti)).toMatchObject({ allow: true, identity: 'alice@users.example.org' })
  })

  it('leaves identities the policy author wrote alone: literal users, host and pilot identities, the central manager', () => {
    expect(decide(grant('nobody@{uid_domain}'), { subject: member('alice'), role: 'job', audience: [] }, fixedJti)).toMatchObject({ allow: true, identity: 'nobody@users.example.org' })
    expect(decide(shipped, ask('cm', 'central-manager', { host: 'cm.cloud-a.example.org' }), fixedJti)).toMatchObject({ allow: true, identity: 'condor@pool.example.org' })
    expect(decide(shipped, ask('factory', 'pilot', { params: { site: 'hpc-b', slurm_job_id: '42' } }), fixedJti)).toMatchObject({ allow: true, identity: 'pilot-hpc-b-42@pilots.pool.example.org' })
    expect(decide(shipped, ask('monitor', 'monitoring'), fixedJti)).toMatchObject({ allow: true, identity: 'monitor@pool.example.org' })
  })
})

describe('per-caller storage paths: one caller value per path segment', () => {
  // Two values in one segment have no boundary between them: preferred_username "alice-x" with sub "y"
  // and preferred_username "alice" with sub "x-y" both give /home/alice-x-y (worked by hand), so one
  // caller's directory would be another's. A value that ends its segment is bounded by the "/" after it.
  const grant = (scope: string) => `
version: 1
rules:
  - id: r
    match: { issuer: "${ISS}", groups: [/vo] }
    grants:
      - role: job-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/data", "${scope}"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
`
  it('refuses at load a placeholder that does not end its path segment', () => {
    for (const bad of ['storage.read:/home/{preferred_username}-{sub}', 'storage.read:/home/{preferred_username}{client_id}', 'storage.create:/home/{sub}.d', 'read:/home/{sub}x/data']) {
      expect(() => policyFrom(grant(bad)), bad).toThrow(/must end its path segment/)
    }
  })

  it('says in one line what is wrong with a bad template, naming it a scope', () => {
    const msg = (scope: string) => { try { policyFrom(grant(scope)); return '' } catch (e) { return (e as Error).message } }
    expect(msg('storage.read:/home/{sub')).toMatch(/^\d+:\d+ rules\.0\.grants\.0\.scopes\.1: unbalanced brace in scope "storage\.read:\/home\/\{sub"$/)
    expect(msg('storage.read:/home/{Sub}')).toMatch(/^\d+:\d+ rules\.0\.grants\.0\.scopes\.1: invalid placeholder "\{Sub\}" in scope "storage\.read:\/home\/\{Sub\}"$/)
  })

  it('still loads a placeholder that ends its segment, after a literal or before a sub-directory', () => {
    const p = policyFrom(grant('storage.create:/home/u-{sub}/{preferred_username}/data'))
    const caller = subject({ sub: 'c1', groups: ['/vo'], preferred_username: 'carol' })
    expect(decide(p, { subject: caller, role: 'job-storage', audience: ['https://se.example.org'] }, fixedJti))
      .toMatchObject({ allow: true, scopes: ['storage.read:/store/data', 'storage.create:/home/u-c1/carol/data'] })
  })
})

describe('per-caller storage paths: one owner per directory tree', () => {
  // /store/user/{preferred_username} in a rule for IAM A and another for IAM B: alice at A and alice at B
  // (two people; each IAM assigns names on its own) both get /store/user/alice. And under one IAM, {sub}
  // beside {preferred_username}: a user named after another's sub gets that user's directory.
  const OTHER = 'https://other-iam.example.org/'
  const two = (a: { iss: string; path: string }, b: { iss: string; path: string }) => `
version: 1
rules:
  - id: first
    match: { issuer: "${a.iss}", groups: [/vo] }
    grants:
      - role: job-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/data", "storage.create:${a.path}"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
  - id: second
    match: { issuer: "${b.iss}", groups: [/vo] }
    grants:
      - role: job-storage
        identity: "{preferred_username}@b.{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/data", "read:${b.path}"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
`
  it('refuses at load two IAMs, or two placeholders, naming callers under one directory', () => {
    const cases = [
      [{ iss: ISS, path: '/store/user/{preferred_username}' }, { iss: OTHER, path: '/store/user/{preferred_username}' }],
      [{ iss: ISS, path: '/store/user/{sub}' }, { iss: ISS, path: '/store/user/{preferred_username}' }],
      // /store/{sub} with sub "user" covers every /store/user/<name>.
      [{ iss: ISS, path: '/store/{sub}' }, { iss: OTHER, path: '/store/user/{preferred_username}' }],
    ] as const
    for (const [a, b] of cases) expect(() => policyFrom(two(a, b)), `${a.path} ${b.path}`).toThrow(/overlap/)
  })

  it('loads the same tree for two IAMs when their tokens go to different storage (disjoint literal audiences)', () => {
    const yaml = two({ iss: ISS, path: '/store/user/{preferred_username}' }, { iss: OTHER, path: '/store/user/{preferred_username}' })
    const separate = yaml.replace(/audiences: \["https:\/\/se\.example\.org"\]\n(?![\s\S]*audiences)/, 'audiences: ["https://se-b.example.org"]\n')
    expect(separate).toContain('https://se-b.example.org')
    expect(() => policyFrom(separate)).not.toThrow()
    // A glob may name the other storage too: still refused.
    expect(() => policyFrom(separate.replace('https://se-b.example.org', 'https://se*.example.org'))).toThrow(/overlap/)
  })

  it('loads one IAM and one placeholder in several rules, and separate trees for separate IAMs', () => {
    expect(() => policyFrom(two({ iss: ISS, path: '/store/user/{preferred_username}' }, { iss: 'https://iam.example.org', path: '/store/user/{preferred_username}/x' }))).not.toThrow()
    expect(() => policyFrom(two({ iss: ISS, path: '/store/user/{preferred_username}' }, { iss: OTHER, path: '/store/other/{preferred_username}' }))).not.toThrow()
  })
})

describe('the shipped job-credentials grant', () => {
  // A storage scope is a capability (docs/iam-and-wlcg.md §2.1): alice's job token must not reach bob's files.
  const alice = subject({ sub: 'u-alice', groups: ['/htc/users'], preferred_username: 'alice' })
  const ask = (scopes?: string[]): DecisionRequest => ({ subject: alice, role: 'job-credentials', tokenKind: 'scitoken', audience: [], ...(scopes ? { scopes } : {}) })

  it("gives a user storage under her own directory only", () => {
    const d = decide(shipped, ask(), fixedJti)
    expect(d).toMatchObject({ allow: true, identity: 'alice@users.example.org' })
    if (!d.allow) return
    for (const s of d.scopes.filter((x) => x.startsWith('storage.'))) expect(s).toMatch(/^storage\.[a-z]+:\/store\/user\/alice$/)
    for (const s of ['storage.read:/store/user/bob', 'storage.create:/store/user/bob/x', 'storage.modify:/store/user']) {
      expect(decide(shipped, ask([s]), fixedJti), s).toMatchObject({ allow: false, error: 'invalid_scope' })
    }
    expect(decide(shipped, ask(['storage.create:/store/user/alice/run1']), fixedJti)).toMatchObject({ allow: true, scopes: ['storage.create:/store/user/alice/run1'] })
  })
})

describe('one audience per token unless the grant lists several explicitly', () => {
  // A token with two audiences is accepted at both relying parties (WLCG profile §2.1: aud is a string or an
  // array, and a verifier accepts its own name anywhere in it): stolen at one, it replays at the other.
  const grant = (extra: string) => policyFrom(`
version: 1
rules:
  - id: users
    match: { issuer: "${ISS}", groups: [/htc/users] }
    grants:
      - role: submit-user
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken, access_token]
        scopes: [compute.read]
        profile: wlcg
        audiences: ["condor://ap*.example.org:9618"]
        lifetime: { default: 20m, max: 6h }
${extra}`)
  const AP1 = 'condor://ap1.example.org:9618'
  const AP2 = 'condor://ap2.example.org:9618'

  it.each(['scitoken', 'access_token'] as const)('refuses two audiences that each match the glob (%s): invalid_target', (tokenKind) => {
    const d = decide(grant(''), { subject: CALLERS.alice, role: 'submit-user', tokenKind, audience: [AP1, AP2] }, fixedJti)
    expect(d).toMatchObject({ allow: false, error: 'invalid_target', reason: 'role submit-user issues a token for one audience at a time, not 2 (ask once per service)' })
  })

  it('one audience named twice is one audience', () => {
    expect(decide(grant(''), { subject: CALLERS.alice, role: 'submit-user', audience: [AP1, AP1] }, fixedJti)).toMatchObject({ allow: true, audience: [AP1] })
  })

  it('a grant with multiple_audiences: true issues the list', () => {
    const p = grant('        multiple_audiences: true\n'.replace(/^/, ''))
    expect(decide(p, { subject: CALLERS.alice, role: 'submit-user', audience: [AP1, AP2] }, fixedJti)).toMatchObject({ allow: true, audience: [AP1, AP2] })
  })
})

describe('per-host and per-parameter identities: the caller steers the user part too', () => {
  // {host} is the caller's choice within the grant's hosts, and a request parameter within its params globs:
  // under "{host_short}@{uid_domain}" with hosts ["*.wn.example.org"], a caller asking for host
  // daemon.wn.example.org would get daemon@<uid_domain>, the LSB Core 5.0 §23.2 account daemon on an execute
  // node sharing the UID domain.
  const caller = subject({ sub: 'svc-wn', client_id: 'wn-agent' })
  const grant = (identity: string, extra = '') => policyFrom(`
version: 1
rules:
  - id: nodes
    match: { issuer: "${ISS}", client_id: [wn-agent] }
    grants:
      - role: node
        identity: "${identity}"
        token_kinds: [idtoken]
        authz: [READ]
        hosts: ["*.wn.example.org"]
        lifetime: { default: 20m, max: 1h }
${extra}`)

  it('refuses a host whose short name makes the user part a system account', () => {
    const p = grant('{host_short}@{uid_domain}')
    expect(decide(p, { subject: caller, role: 'node', audience: [], host: 'daemon.wn.example.org' }, fixedJti)).toMatchObject({
      allow: false, error: 'unauthorized_client',
      reason: `the caller's host_short 'daemon' is a reserved account name and cannot name the user of the identity of role node`,
    })
    expect(decide(p, { subject: caller, role: 'node', audience: [], host: 'wn01.wn.example.org' }, fixedJti)).toMatchObject({ allow: true, identity: 'wn01@users.example.org' })
  })

  it('refuses a request parameter that makes the user part a system account, in any case', () => {
    const p = grant('{account}@{uid_domain}', '        params: { account: ["*"] }\n')
    expect(decide(p, { subject: caller, role: 'node', audience: [], host: 'wn01.wn.example.org', params: { account: 'Nobody' } }, fixedJti)).toMatchObject({
      allow: false, error: 'unauthorized_client',
      reason: `the caller's account 'Nobody' would make the user 'nobody', a reserved account name, and cannot name the user of the identity of role node`,
    })
    expect(decide(p, { subject: caller, role: 'node', audience: [], host: 'wn01.wn.example.org', params: { account: 'wn01' } }, fixedJti)).toMatchObject({ allow: true, identity: 'wn01@users.example.org' })
  })

  it("takes the grant's reserved_names on a host identity, as on a per-caller one", () => {
    const p = grant('{host_short}@{uid_domain}', '        reserved_names: [xrootd]\n')
    expect(decide(p, { subject: caller, role: 'node', audience: [], host: 'xrootd.wn.example.org' }, fixedJti)).toMatchObject({
      allow: false, error: 'unauthorized_client', reason: /host_short 'xrootd' is a reserved account name/,
    })
  })

  it('leaves a host identity whose literal prefix keeps it off every reserved name', () => {
    const p = grant('startd-{host_short}@{uid_domain}')
    expect(decide(p, { subject: caller, role: 'node', audience: [], host: 'daemon.wn.example.org' }, fixedJti)).toMatchObject({ allow: true, identity: 'startd-daemon@users.example.org' })
  })
})
