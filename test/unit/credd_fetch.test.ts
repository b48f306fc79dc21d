import { describe, expect, it } from 'vitest'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { creddMayFetch, policyForVault, vaultMayRead } from '../../src/policy/credd_fetch.ts'
import { compilePolicy } from '../../src/policy/compile.ts'
import { parsePolicyFile } from '../../src/policy/load.ts'

const CTX: PolicyContext = {
  trustDomain: 'pool.example.org', uidDomain: 'pool.example.org', vars: { IAM_ISSUER: 'https://iam.example.org/' },
  scitokenProfile: 'wlcg', maxLifetime: {},
}

/** Two groups share the role job-credentials; each rule names its own access points' credds. */
const POLICY = `version: 1
rules:
  - id: cms
    match:
      issuer: \${IAM_ISSUER}
      groups: [/cms]
    grants:
      - role: job-credentials
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [access_token]
        scopes: ["storage.read:/cms"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
        fetched_by: { roles: [credd], sites: [cern] }
  - id: atlas
    match:
      issuer: \${IAM_ISSUER}
      groups: [/atlas]
    grants:
      - role: job-credentials
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [access_token]
        scopes: ["storage.read:/atlas"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
        fetched_by: { roles: [credd-atlas], vault_reads: true }
      - role: job-unfetchable
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/atlas"]
        audiences: ["https://se.example.org"]
        lifetime: { default: 20m, max: 1h }
`

function policy() {
  const parsed = parsePolicyFile('p.yaml', POLICY, CTX)
  expect(parsed.issues).toEqual([])
  return compilePolicy(parsed.rules.map(({ rule, source }) => ({ rule, source })), CTX, { files: ['p.yaml'], digest: 'x' })
}

const user = (groups: string[]): VerifiedSubject => ({ iss: 'https://iam.example.org/', sub: 'u1', groups, scopes: [] }) as unknown as VerifiedSubject

describe('creddMayFetch', () => {
  const p = policy()
  it('allows a credd whose role (and site, where the grant lists sites) a grant of the role names', () => {
    expect(creddMayFetch(p, 'job-credentials', { role: 'credd', site: 'cern' }).allow).toBe(true)
    expect(creddMayFetch(p, 'job-credentials', { role: 'credd-atlas' }).allow).toBe(true)
  })
  it('refuses other roles, other or missing sites, roles no grant opens, and unknown roles', () => {
    expect(creddMayFetch(p, 'job-credentials', { role: 'schedd' })).toMatchObject({ allow: false, reason: expect.stringMatching(/fetched_by/) })
    expect(creddMayFetch(p, 'job-credentials', { role: 'credd', site: 'fnal' }).allow).toBe(false)
    expect(creddMayFetch(p, 'job-credentials', { role: 'credd' }).allow).toBe(false)
    expect(creddMayFetch(p, 'job-unfetchable', { role: 'credd', site: 'cern' }).allow).toBe(false)
    expect(creddMayFetch(p, 'no-such-role', { role: 'credd', site: 'cern' }).allow).toBe(false)
  })
  it('with the credential\'s user, counts only the grants of rules that match that user', () => {
    expect(creddMayFetch(p, 'job-credentials', { role: 'credd', site: 'cern' }, user(['/cms'])).allow).toBe(true)
    expect(creddMayFetch(p, 'job-credentials', { role: 'credd', site: 'cern' }, user(['/atlas'])).allow).toBe(false)
    expect(creddMayFetch(p, 'job-credentials', { role: 'credd-atlas' }, user(['/atlas'])).allow).toBe(true)
    expect(creddMayFetch(p, 'job-credentials', { role: 'credd-atlas' }, user(['/cms'])).allow).toBe(false)
  })
})

// A Vault read names no credd: only a grant whose fetched_by says vault_reads: true, in a rule that matches
// the user, lets it in (docs/policies.md); a site-bound grant without it and a grant with no fetched_by do not.
describe('vaultMayRead and policyForVault', () => {
  const p = policy()
  it('allows only users of a rule whose grant of the role has fetched_by.vault_reads: true', () => {
    expect(vaultMayRead(p, 'job-credentials', user(['/atlas'])).allow).toBe(true)
    expect(vaultMayRead(p, 'job-credentials', user(['/cms', '/atlas'])).allow).toBe(true)
  })
  it('refuses a site-bound fetched_by without vault_reads, a grant with no fetched_by, a user no rule matches, an unknown role', () => {
    expect(vaultMayRead(p, 'job-credentials', user(['/cms']))).toMatchObject({ allow: false, reason: expect.stringMatching(/vault_reads/) })
    expect(vaultMayRead(p, 'job-unfetchable', user(['/atlas']))).toMatchObject({ allow: false, reason: expect.stringMatching(/no fetched_by/) })
    expect(vaultMayRead(p, 'job-credentials', user(['/lhcb']))).toMatchObject({ allow: false, reason: expect.stringMatching(/no policy rule that matches/) })
    expect(vaultMayRead(p, 'no-such-role', user(['/atlas'])).allow).toBe(false)
  })
  it('decides a Vault read only under the grants that allow it: the site-bound grant of the same role never widens it', () => {
    const grants = policyForVault(p, 'job-credentials').byRole.get('job-credentials') ?? []
    expect(grants.map(({ rule }) => rule.id)).toEqual(['atlas'])
    expect(policyForVault(p, 'job-unfetchable').byRole.get('job-unfetchable')).toEqual([])
  })
})
