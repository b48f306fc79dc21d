import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { formatIssue, loadPolicyDir, parsePolicyFile, type PolicyIssue } from '../../src/policy/load.ts'
import { tempDir } from '../support/tmp.ts'

const CTX: PolicyContext = {
  trustDomain: 'pool.example.org',
  uidDomain: 'pool.example.org',
  vars: { IAM_ISSUER: 'https://iam.example.org/' },
  scitokenProfile: 'wlcg',
  maxLifetime: { idtoken: 7 * 86400, scitoken: 6 * 3600 },
}

/** A policy file with one rule whose grants are the given YAML (indented under `grants:`). */
function file(grants: string, match = 'issuer: ${IAM_ISSUER}'): string {
  return [
    'version: 1',
    'rules:',
    '  - id: r1',
    '    match:',
    `      ${match}`,
    '    grants:',
    ...grants.trim().split('\n').map((l) => `      ${l}`),
    '',
  ].join('\n')
}

const OK_GRANT = `- role: schedd
  identity: schedd-{host_short}@aps.{trust_domain}
  token_kinds: [idtoken]
  authz: [ADVERTISE_SCHEDD, ADVERTISE_MASTER, READ]
  hosts: ["ap*.example.org"]
  lifetime: { default: 1h, max: 1d }`

function issuesOf(text: string, ctx: PolicyContext = CTX): PolicyIssue[] {
  return parsePolicyFile('t.yaml', text, ctx).issues
}

/** The error must point at `at`: the text found at its LINE:COL in the file starts with it. */
function expectIssueAt(text: string, issues: PolicyIssue[], at: string, message: RegExp): void {
  const hit = issues.find((i) => message.test(i.message))
  expect(hit, `no issue matching ${message} in:\n${issues.map(formatIssue).join('\n')}`).toBeDefined()
  const line = text.split('\n')[hit!.line! - 1]!
  expect(line.slice(hit!.col! - 1)).toMatch(new RegExp(`^${at.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
  expect(formatIssue(hit!)).toMatch(/^t\.yaml:\d+:\d+: /)
}

describe('policy schema: the shipped shape is valid', () => {
  it('accepts a well-formed grant', () => {
    expect(issuesOf(file(OK_GRANT))).toEqual([])
  })

  it('accepts WRITE on a pilot role with direct_attach: true', () => {
    expect(issuesOf(file(`- role: annex-pilot
  identity: pilot-{jti8}@pilots.{trust_domain}
  token_kinds: [idtoken]
  authz: [ADVERTISE_STARTD, READ, WRITE]
  direct_attach: true
  lifetime: { default: 1h, max: 1d }`))).toEqual([])
  })

  it('accepts a storage-only SciToken grant (a job token for a storage element): storage.* in WLCG, read/write in SciTokens 2.0', () => {
    for (const [profile, read, write] of [['wlcg', 'storage.read', 'storage.create'], ['scitokens2', 'read', 'write']]) {
      expect(issuesOf(file(`- role: job-storage
  identity: "{preferred_username}"
  token_kinds: [scitoken]
  scopes: ["${read}:/store/user", "${write}:/store/user"]
  profile: ${profile}
  audiences: ["https://se.example.org"]
  lifetime: { default: 20m, max: 1h }`))).toEqual([])
    }
  })

  it('accepts condor@ for the central manager', () => {
    expect(issuesOf(file(`- role: central-manager
  identity: condor@{trust_domain}
  token_kinds: idtoken
  authz: [NEGOTIATOR, ADVERTISE_MASTER, READ]
  lifetime: { default: 1h, max: 1d }`))).toEqual([])
  })
})

// name | grants YAML | where the error must point | message
const BAD: [string, string, string, RegExp][] = [
  ['idtoken grant with an empty authz list (unscoped IDTOKEN)', `- role: monitoring
  identity: monitor@{trust_domain}
  token_kinds: [idtoken]
  authz: []
  lifetime: { default: 1h, max: 1d }`, '[]', /needs at least one authz level: an IDTOKEN without condor:\/ scopes is unrestricted/],
  ['idtoken grant with no authz key at all', `- role: monitoring
  identity: monitor@{trust_domain}
  token_kinds: [idtoken]
  lifetime: { default: 1h, max: 1d }`, 'role: monitoring', /needs at least one authz level/],
  ['condor@ identity for a schedd', `- role: schedd
  identity: condor@{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'condor@{trust_domain}', /identity condor@… is allowed for the central-manager role only/],
  ['condor@ identity with a literal domain for a submit user', `- role: submit-user
  identity: Condor@users.example.org
  token_kinds: [idtoken]
  authz: [READ, WRITE]
  lifetime: { default: 1h, max: 1d }`, 'Condor@users', /allowed for the central-manager role only/],
  ['root@ identity for a job', `- role: job
  identity: "root@{uid_domain}"
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, '"root@', /root@… is allowed for the central-manager role only/],
  ['multiple_audiences on an IDTOKEN-only grant', `- role: job
  identity: "job-{jti8}@{uid_domain}"
  token_kinds: [idtoken]
  authz: [READ]
  multiple_audiences: true
  lifetime: { default: 1h, max: 1d }`, 'true', /multiple_audiences applies to scitoken and access_token/],
  ['WRITE on a pilot without direct_attach', `- role: pilot
  identity: pilot-{jti8}@pilots.{trust_domain}
  token_kinds: [idtoken]
  authz: [ADVERTISE_STARTD, READ, WRITE]
  lifetime: { default: 1h, max: 1d }`, '[ADVERTISE_STARTD', /WRITE \(or a level implying it\) on role pilot needs direct_attach: true/],
  ['DAEMON (implies WRITE) on a startd', `- role: startd
  identity: startd-{jti8}@eps.{trust_domain}
  token_kinds: [idtoken]
  authz: [DAEMON]
  lifetime: { default: 1h, max: 1d }`, '[DAEMON]', /on role startd needs direct_attach: true/],
  ['compute create+modify+cancel (WRITE) on a startd SciToken', `- role: startd-cloud
  identity: startd-{jti8}@eps.{trust_domain}
  token_kinds: [scitoken]
  scopes: [compute.*]
  audiences: ["condor://cm.example.org:9618"]
  lifetime: { default: 1h, max: 1d }`, '[compute.*]', /give HTCondor WRITE on role startd-cloud/],
  ['direct_attach on a role that is not a pilot or startd', `- role: schedd
  identity: schedd-x@aps.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  direct_attach: true
  lifetime: { default: 1h, max: 1d }`, 'true', /direct_attach applies only to pilot and startd roles/],
  ['unknown authz level', `- role: schedd
  identity: schedd-x@aps.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ, OWNER]
  lifetime: { default: 1h, max: 1d }`, 'OWNER', /unknown HTCondor authorization level "OWNER"/],
  ['config pseudo-level as authz', `- role: schedd
  identity: schedd-x@aps.{trust_domain}
  token_kinds: [idtoken]
  authz: [condor:/ALLOW]
  lifetime: { default: 1h, max: 1d }`, 'condor:/ALLOW', /unknown HTCondor authorization level/],
  ['unknown template placeholder', `- role: pilot
  identity: pilot-{sitename}@pilots.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'pilot-{sitename}', /unknown placeholder \{sitename\}/],
  ['request parameter used without declaring its allowed values', `- role: pilot
  identity: pilot-{job}@pilots.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'pilot-{job}', /declare \{job\} under params/],
  ['{site} with no sites bound', `- role: pilot
  identity: pilot-{site}@pilots.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'pilot-{site}', /\{site\} is the site the grant binds; list it under sites/],
  ['site as a request parameter: the caller would choose its revocation label', `- role: pilot
  identity: pilot-{site}@pilots.{trust_domain}
  params: { site: [hpc-b] }
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, '[hpc-b] }', /site is never taken from the request.*sites:/],
  ['a site that is not a plain name', `- role: pilot
  identity: pilot@pilots.{trust_domain}
  sites: ["hpc b"]
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, '"hpc b"', /a site is letters, digits/],
  ['a site listed twice', `- role: pilot
  identity: pilot@pilots.{trust_domain}
  sites: [hpc-b, hpc-b]
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, '[hpc-b, hpc-b]', /a site is listed twice/],
  ['sites on the admin role', `- role: admin
  sites: [hpc-b]`, '[hpc-b]', /admin role only opens the admin API/],
  ['{host} with no hosts restriction', `- role: schedd
  identity: schedd-{host}@aps.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'schedd-{host}', /\{host\} comes from the caller's request; restrict it with hosts/],
  ['unbalanced brace in a template', `- role: schedd
  identity: schedd-{host@aps
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'schedd-{host@aps', /unbalanced brace/],
  ['IDTOKEN identity without a domain', `- role: monitoring
  identity: monitor
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'monitor', /must be user@domain/],
  ['SciToken grant with neither HTCondor nor storage scopes: it authorizes nothing', `- role: data
  identity: "{sub}"
  token_kinds: [scitoken]
  scopes: [wlcg.groups]
  audiences: ["https://se.example.org"]
  lifetime: { default: 1h, max: 2h }`, '[wlcg.groups]', /needs a condor:\/, compute\.\* or storage path scope/],
  ['SciTokens 2.0 with only compute.* (not translated)', `- role: submit-user
  identity: "{sub}"
  token_kinds: [scitoken]
  scopes: [compute.read]
  profile: scitokens2
  audiences: ["condor://ap.example.org:9618"]
  lifetime: { default: 1h, max: 2h }`, '[compute.read]', /does not translate compute\.\* in SciTokens 2\.0/],
  ['unknown compute scope', `- role: submit-user
  identity: "{sub}"
  token_kinds: [scitoken]
  scopes: [compute.read, compute.submit]
  audiences: ["condor://ap.example.org:9618"]
  lifetime: { default: 1h, max: 2h }`, 'compute.submit', /unknown compute scope/],
  ['non-normalised storage path', `- role: submit-user
  identity: "{sub}"
  token_kinds: [scitoken]
  scopes: [compute.read, "storage.read:/a/../b"]
  audiences: ["condor://ap.example.org:9618"]
  lifetime: { default: 1h, max: 2h }`, '"storage.read:/a/../b"', /must be absolute and normalised/],
  ['offline_access is never handed out', `- role: submit-user
  identity: "{sub}"
  token_kinds: [access_token]
  scopes: [offline_access]
  audiences: ["https://se.example.org"]
  lifetime: { default: 1h, max: 2h }`, 'offline_access', /refresh tokens stay in the broker/],
  ['wildcard audience', `- role: submit-user
  identity: "{sub}"
  token_kinds: [scitoken]
  scopes: [compute.read]
  audiences: [ANY]
  lifetime: { default: 1h, max: 2h }`, 'ANY', /wildcard audience "ANY" is never issued/],
  ['audience pattern matching everything', `- role: submit-user
  identity: "{sub}"
  token_kinds: [scitoken]
  scopes: [compute.read]
  audiences: ["*"]
  lifetime: { default: 1h, max: 2h }`, '"*"', /would match any service/],
  ['SciToken grant without audiences', `- role: submit-user
  identity: "{sub}"
  token_kinds: [scitoken]
  scopes: [compute.read]
  lifetime: { default: 1h, max: 2h }`, 'role: submit-user', /need audiences: aud is mandatory/],
  ['bare * host pattern', `- role: schedd
  identity: schedd-{host_short}@aps.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  hosts: ["*"]
  lifetime: { default: 1h, max: 1d }`, '"*"', /is not a lower-case host pattern/],
  ['typo in a key', `- role: schedd
  identity: schedd-x@aps.{trust_domain}
  token_kinds: [idtoken]
  autz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'autz', /unknown key "autz"/],
  ['unreadable duration', `- role: schedd
  identity: schedd-x@aps.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 5 weeks }`, '5 weeks', /a lifetime is a number of seconds/],
  ['default lifetime above max', `- role: schedd
  identity: schedd-x@aps.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 2d, max: 1d }`, '2d', /default lifetime 172800s exceeds max 86400s/],
  ['max lifetime above the broker cap', `- role: schedd
  identity: schedd-x@aps.{trust_domain}
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1d, max: 30d }`, '30d', /exceeds the broker's idtoken\.max_lifetime of 604800s/],
  ['default token kind not among the kinds', `- role: schedd
  identity: schedd-x@aps.{trust_domain}
  token_kinds: [idtoken]
  default_token_kind: scitoken
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'scitoken', /"scitoken" is not in token_kinds/],
  ['unknown token kind', `- role: schedd
  identity: schedd-x@aps.{trust_domain}
  token_kinds: [idtoken, x509]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, 'x509', /token_kinds\.1/],
  ['admin grant with token fields', `- role: admin
  identity: admin@{trust_domain}`, 'admin@{trust_domain}', /the admin role only opens the admin API/],
  ['role granted twice in one rule', `${OK_GRANT}\n${OK_GRANT}`, 'schedd', /role schedd is granted twice/],
  ['role name with capitals', OK_GRANT.replace('role: schedd', 'role: Schedd'), 'Schedd', /a role is lower-case/],
  ['parameter shadowing a built-in placeholder', `- role: pilot
  identity: pilot-{host}@pilots.{trust_domain}
  hosts: [a.example.org]
  params: { host: ["*"] }
  token_kinds: [idtoken]
  authz: [READ]
  lifetime: { default: 1h, max: 1d }`, '["*"]', /"host" is a built-in placeholder/],
]

describe('policy schema: refusals point at the offending text', () => {
  it.each(BAD)('%s', (_name, grants, at, message) => {
    const text = file(grants)
    expectIssueAt(text, issuesOf(text), at, message)
  })

  it('SciTokens 2.0 by broker default: compute.* alone is refused at load', () => {
    const text = file(`- role: submit-user
  identity: "{sub}"
  token_kinds: [scitoken]
  scopes: [compute.read]
  audiences: ["condor://ap.example.org:9618"]
  lifetime: { default: 1h, max: 2h }`)
    expect(issuesOf(text)).toEqual([])
    expectIssueAt(text, issuesOf(text, { ...CTX, scitokenProfile: 'scitokens2' }), '[compute.read]', /mints SciTokens 2\.0 by default/)
  })

  it('storage.* in a SciTokens 2.0 grant is refused at load, whether the grant or the broker picks the profile', () => {
    // scitokens-cpp translates storage.read:/p to read:/p only in a WLCG token; in a scitoken:2.0 token it
    // lists storage.read:/p as an authorization no enforcer asks for (test/interop/scitokens_verify.test.ts).
    const grant = (profile: string) => file(`- role: job-storage
  identity: "u-{sub}@{uid_domain}"
  token_kinds: [scitoken]
  scopes: ["storage.read:/store/data"]
  audiences: ["https://se.example.org"]
${profile}  lifetime: { default: 1h, max: 2h }`)
    expect(issuesOf(grant(''))).toEqual([])
    expect(issuesOf(grant('  profile: wlcg\n'))).toEqual([])
    const explicit = grant('  profile: scitokens2\n')
    expectIssueAt(explicit, issuesOf(explicit), '["storage.read:/store/data"]', /storage\.read:\/store\/data authorizes nothing in a SciTokens 2\.0 token/)
    expectIssueAt(grant(''), issuesOf(grant(''), { ...CTX, scitokenProfile: 'scitokens2' }), '["storage.read:/store/data"]', /authorizes nothing in a SciTokens 2\.0 token; write read:\/store\/data or set profile: wlcg/)
  })

  it('unknown ${VAR}: error at the scalar naming the config key', () => {
    const text = file(OK_GRANT, 'issuer: ${IAM_ISUER}')
    expectIssueAt(text, issuesOf(text), '${IAM_ISUER}', /unknown variable \$\{IAM_ISUER\}; set policy\.vars\.IAM_ISUER/)
  })

  it('matches need an issuer (sub is unique only per issuer)', () => {
    const text = file(OK_GRANT, 'groups: [/vo]')
    expectIssueAt(text, issuesOf(text), 'groups', /match\.issuer/)
  })

  it('YAML syntax errors carry the parser position', () => {
    const text = 'version: 1\nrules:\n  - id: r1\n    match: { issuer: x\n'
    const issues = issuesOf(text)
    expect(issues.length).toBeGreaterThan(0)
    expect(issues[0]!.line).toBeGreaterThanOrEqual(4)
  })

  it('duplicate YAML keys are errors, not last-one-wins', () => {
    const text = file(OK_GRANT).replace('    grants:', '    grants: []\n    grants:')
    const issues = issuesOf(text)
    expect(issues[0]).toMatchObject({ line: 7, message: expect.stringMatching(/unique/i) })
  })

  it('an empty file and a wrong version are errors at 1:1', () => {
    expect(issuesOf('# nothing\n')).toEqual([{ file: 't.yaml', line: 1, col: 1, message: expect.stringMatching(/empty policy file/) }])
    expect(issuesOf('version: 2\nrules: []\n')[0]).toMatchObject({ line: 1, col: 10, message: expect.stringMatching(/version: 1 is the only policy format/) })
  })
})

describe('loadPolicyDir', () => {
  it('refuses duplicate rule ids across files, naming both places', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'a.yaml'), file(OK_GRANT))
    writeFileSync(join(dir, 'b.yaml'), `# second file\n${file(OK_GRANT)}`)
    const r = loadPolicyDir(dir, CTX)
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.issues.map(formatIssue)).toEqual([`${join(dir, 'b.yaml')}:4:9: duplicate rule id "r1" (first defined at ${join(dir, 'a.yaml')}:3:5)`])
  })

  it('refuses an empty or missing directory: no policy would deny everything silently', () => {
    const dir = tempDir()
    writeFileSync(join(dir, '.hidden.yaml'), file(OK_GRANT))
    writeFileSync(join(dir, 'notes.txt'), 'not a policy')
    expect(loadPolicyDir(dir, CTX)).toMatchObject({ ok: false, issues: [{ message: expect.stringMatching(/no policy files/) }] })
    expect(loadPolicyDir(join(dir, 'nope'), CTX)).toMatchObject({ ok: false, issues: [{ message: 'cannot read policy directory: ENOENT' }] })
  })

  it('orders rules by file name, then by position, and digests the content', () => {
    const dir = tempDir()
    writeFileSync(join(dir, '20-b.yml'), file(OK_GRANT).replace('id: r1', 'id: second'))
    writeFileSync(join(dir, '10-a.yaml'), file(OK_GRANT).replace('id: r1', 'id: first'))
    const r = loadPolicyDir(dir, CTX)
    if (!r.ok) throw new Error(r.issues.map(formatIssue).join('\n'))
    expect(r.policy.rules.map((x) => x.id)).toEqual(['first', 'second'])
    expect(r.policy.byRole.get('schedd')!.map((c) => c.rule.id)).toEqual(['first', 'second'])
    expect(r.policy.digest).toMatch(/^[0-9a-f]{64}$/)
    writeFileSync(join(dir, '10-a.yaml'), `${file(OK_GRANT).replace('id: r1', 'id: first')}# changed\n`)
    const r2 = loadPolicyDir(dir, CTX)
    expect(r2.ok && r2.policy.digest).not.toBe(r.policy.digest)
  })

  it('the shipped policies validate against a default-like context', () => {
    const r = loadPolicyDir('policies', CTX)
    expect(r.ok ? [] : r.issues.map(formatIssue)).toEqual([])
  })
})

describe('certificate grants', () => {
  it('accepts a certificate block on a grant with hosts', () => {
    expect(issuesOf(file(`${OK_GRANT}\n  certificate: { max_lifetime: 2d, ip_addresses: ["10.1.*"] }`))).toEqual([])
  })
  it('refuses one on a grant with no hosts, on the admin role, and an address that is no IPv4 glob', () => {
    const noHosts = OK_GRANT.replace('  hosts: ["ap*.example.org"]\n', '')
expect(issuesOf(file(`${noHosts}\n  certificate: { max_lifetime: 2d }`)).map((i) => i.message)).toContain('rules.0.grants.0.certificate: a certificate names hosts: list the hosts it may name under hosts:')
    expect(issuesOf(file('- role: admin\n  certificate: { max_lifetime: 2d }')).map((i) => i.message)).toContain('rules.0.grants.0.certificate: the admin role only opens the admin API and mints no token; "certificate" does not apply')
    expect(issuesOf(file(`${OK_GRANT}\n  certificate: { max_lifetime: 2d, ip_addresses: ["host.example.org"] }`)).map((i) => i.message)).toContain('rules.0.grants.0.certificate.ip_addresses.0: an IPv4 address or a glob of one (digits, dots, *)')
  })
})

describe('fetched_by (which credds may fetch job tokens under a grant)', () => {
  const JOB_GRANT = `- role: job-credentials
  identity: "{preferred_username}@{uid_domain}"
  token_kinds: [access_token, scitoken]
  scopes: ["storage.read:/store/user"]
  audiences: ["https://se.example.org"]
  lifetime: { default: 20m, max: 1h }`
  const messages = (extra: string, grant = JOB_GRANT) => issuesOf(file(`${grant}\n  ${extra}`)).map((i) => i.message)

  it('accepts roles, optionally sites, as a list or one name', () => {
    expect(messages('fetched_by: { roles: [credd, credd-hpc], sites: [ap-east] }')).toEqual([])
    expect(messages('fetched_by: { roles: credd }')).toEqual([])
  })
  it('takes vault_reads as a boolean, and only where fetched_by may be', () => {
    expect(messages('fetched_by: { roles: [credd], sites: [ap-east], vault_reads: true }')).toEqual([])
    expect(messages('fetched_by: { roles: [credd], vault_reads: false }')).toEqual([])
    expect(messages('fetched_by: { roles: [credd], vault_reads: "yes" }').join('\n')).toMatch(/fetched_by\.vault_reads/)
    expect(messages('vault_reads: true').join('\n')).toMatch(/vault_reads/)
    expect(messages('fetched_by: { roles: [credd], vault_reads: true }', OK_GRANT)).toContain('rules.0.grants.0.fetched_by: fetched_by is for job credentials: token_kinds must include access_token or scitoken')
  })
  it('refuses an unknown key, a bad role or site, duplicates, an empty list, and a grant that is no job-credential grant', () => {
    expect(messages('fetched_by: { roles: [credd], hosts: [ap1] }').join('\n')).toMatch(/fetched_by.*hosts|hosts.*fetched_by/)
    expect(messages('fetched_by: { roles: [Credd] }')).toContain('rules.0.grants.0.fetched_by.roles.0: a role is lower-case letters, digits and dashes, starting with a letter')
    expect(messages('fetched_by: { roles: [credd], sites: ["ap east"] }').join('\n')).toMatch(/fetched_by\.sites\.0: a site is letters, digits/)
    expect(messages('fetched_by: { roles: [credd, credd] }')).toContain('rules.0.grants.0.fetched_by.roles: a role is listed twice')
    expect(messages('fetched_by: { roles: [credd], sites: [a, a] }')).toContain('rules.0.grants.0.fetched_by.sites: a site is listed twice')
    expect(messages('fetched_by: { roles: [] }').join('\n')).toMatch(/fetched_by\.roles/)
    expect(messages('fetched_by: { sites: [a] }').join('\n')).toMatch(/fetched_by\.roles/)
    expect(messages('fetched_by: { roles: [credd] }', OK_GRANT)).toContain('rules.0.grants.0.fetched_by: fetched_by is for job credentials: token_kinds must include access_token or scitoken')
    expect(issuesOf(file('- role: admin\n  fetched_by: { roles: [credd] }')).map((i) => i.message)).toContain('rules.0.grants.0.fetched_by: the admin role only opens the admin API and mints no token; "fetched_by" does not apply')
  })
})

// A sub is unique only within one IAM (docs/iam-and-wlcg.md §2.1: "unique within the VO"), and a username
// even less so: alice at one IAM and alice at another are two people. A rule trusting two IAMs must not
// name callers by sub or client_id, nor build one identity from either caller's claims.
describe('policy schema: a rule trusting several IAMs', () => {
  const TWO = 'issuer: [https://iam.example.org/, https://other-iam.example.net/]'
  const USER_GRANT = `- role: submit-user
  identity: "{preferred_username}@{uid_domain}"
  token_kinds: [idtoken]
  authz: [READ, WRITE]
  lifetime: { default: 1h, max: 6h }`

  it.each(['{preferred_username}', '{sub}', '{client_id}'])('refuses an identity built from %s', (ph) => {
    const issues = issuesOf(file(USER_GRANT.replace('{preferred_username}', ph), `${TWO}\n      groups: [/htc/users]`))
    expect(issues.map((i) => i.message).join('\n')).toMatch(/several IAMs/)
  })

  it.each(['sub: [a1b2]', 'client_id: [ctb-admin]'])('refuses a match on %s', (m) => {
    const issues = issuesOf(file(OK_GRANT, `${TWO}\n      ${m}`))
    expect(issues.map((i) => i.message).join('\n')).toMatch(/several IAMs/)
  })

  it('accepts groups and constant identities across IAMs, and one IAM spelt with and without its trailing slash', () => {
    expect(issuesOf(file(OK_GRANT, `${TWO}\n      groups: [/htc/ops]`))).toEqual([])
    expect(issuesOf(file(USER_GRANT, 'issuer: [https://iam.example.org/, https://iam.example.org]\n      groups: [/htc/users]'))).toEqual([])
  })
})
