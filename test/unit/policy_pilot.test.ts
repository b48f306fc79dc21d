import { describe, expect, it } from 'vitest'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadPolicies, parsePolicyFile } from '../../src/policy/load.ts'
import { tempDir } from '../support/tmp.ts'
import { decideEnrolment, pilotGrantOf, renderPilotIdentity } from '../../src/policy/pilot_decision.ts'

const CTX: PolicyContext = {
  trustDomain: 'pool.example.org', uidDomain: 'pool.example.org', vars: { IAM_ISSUER: 'https://iam.example.org/' },
  scitokenProfile: 'wlcg', maxLifetime: { idtoken: 7 * 86400, scitoken: 6 * 3600 },
}

function policyText(pilot: string, authz = '[READ, ADVERTISE_STARTD, ADVERTISE_MASTER]', extra = ''): string {
  return `version: 1
rules:
  - id: factory
    match:
      issuer: \${IAM_ISSUER}
      client_id: [factory]
    grants:
      - role: pilot
        identity: pilot-{site}-{slurm_job_id}@pilots.{trust_domain}
        sites: [hpc-b]
        params: { slurm_job_id: ["*"] }
        token_kinds: [idtoken]
        authz: ${authz}
        lifetime: { default: 2h, max: 1d }
${extra}        pilot:
${pilot.trim().split('\n').map((l) => `          ${l}`).join('\n')}
`
}

const parse = (text: string) => parsePolicyFile('t.yaml', text, CTX)
const compiled = (text: string) => {
  const dir = tempDir()
  writeFileSync(join(dir, 't.yaml'), text)
  return loadPolicies(dir, CTX)
}
const messages = (text: string) => parse(text).issues.map((i) => i.message).join('\n')
const subject = (client_id: string): VerifiedSubject => ({ iss: 'https://iam.example.org/', sub: 's1', client_id, groups: [], scopes: [], exp: 0, claims: {} })

const BASE = 'max_count: 8\nenrolment_lifetime: { default: 1d, max: 3d }'

describe('policy: pilot grants', () => {
  it('accepts a pilot block with the pilot levels', () => {
    expect(parse(policyText(BASE)).issues).toEqual([])
  })

  it.each([
    ['DAEMON without tunneled', policyText(BASE, '[READ, ADVERTISE_STARTD, ADVERTISE_MASTER, DAEMON]'), /authz is exactly READ, ADVERTISE_STARTD, ADVERTISE_MASTER/],
    ['a level beyond the pilot set', policyText(BASE, '[READ, ADVERTISE_STARTD]'), /authz is exactly/],
    ['tunneled without DAEMON', policyText(`${BASE}\ntunneled: true`), /authz is exactly READ, ADVERTISE_STARTD, ADVERTISE_MASTER, DAEMON/],
    // A collector admits one enrolment's pilots by the identity's head and a `*` (docs/provisioning.md): the head
    // must end site and enrolment with a character neither holds, or it admits other sites' and clusters' pilots.
    ['the shape before enrolments were named', policyText(`${BASE}\nidentity: "pilot-{site}-{slurm_job_id}-{node}@pilots.{trust_domain}"`), /pilot\.identity: a pilot identity.*\{site\}.*e\.g\. pilot\+\{site\}\+\{enrolment\}\+\{slurm_job_id\}-\{node\}@pilots\.\{trust_domain\}, the default: drop pilot\.identity to use it/],
    ['a site ended by a dash', policyText(`${BASE}\nidentity: "pilot-{site}-{enrolment}+{slurm_job_id}-{node}@pilots.{trust_domain}"`), /\{site\} must come once, before \{slurm_job_id\} and \{node\}, and be followed by one of \+ ~ = @/],
    ['the enrolment after the job', policyText(`${BASE}\nidentity: "pilot+{site}+{slurm_job_id}+{enrolment}+{node}@pilots.{trust_domain}"`), /\{enrolment\} must come once, before/],
    ['an identity without the node', policyText(`${BASE}\nidentity: "p-{site}-{slurm_job_id}@pilots.{trust_domain}"`), /must contain \{node\}/],
    ['a default enrolment lifetime above its max', policyText('max_count: 8\nenrolment_lifetime: { default: 4d, max: 3d }'), /exceeds max/],
    ['a count of zero', policyText('max_count: 0\nenrolment_lifetime: { default: 1d, max: 3d }'), /max_count/],
  ])('refuses %s', (_name, text, re) => {
    expect(messages(text)).toMatch(re)
  })

  it('allows DAEMON on a tunneled site', () => {
    expect(parse(policyText(`${BASE}\ntunneled: true`, '[READ, ADVERTISE_STARTD, ADVERTISE_MASTER, DAEMON]')).issues).toEqual([])
  })

  it('decides enrolments: site from the grant, count and lifetime within the maximum, other callers refused', () => {
    const policy = compiled(policyText(BASE))
    expect(decideEnrolment(policy, { subject: subject('factory'), role: 'pilot', count: 8 })).toEqual({ allow: true, ruleId: 'factory', role: 'pilot', site: 'hpc-b', count: 8, lifetime: 86400 })
    expect(decideEnrolment(policy, { subject: subject('factory'), role: 'pilot', count: 9 })).toMatchObject({ allow: false, error: 'invalid_request' })
    expect(decideEnrolment(policy, { subject: subject('factory'), role: 'pilot', count: 1, lifetime: 4 * 86400 })).toMatchObject({ allow: false, error: 'invalid_request' })
    expect(decideEnrolment(policy, { subject: subject('factory'), role: 'pilot', count: 1, site: 'hpc-x' })).toMatchObject({ allow: false, error: 'unauthorized_client' })
    expect(decideEnrolment(policy, { subject: subject('someone'), role: 'pilot', count: 1 })).toMatchObject({ allow: false, error: 'unauthorized_client' })
  })

  it('renders the default identity with site, job and node, and finds the grant again by rule and site', () => {
    const policy = compiled(policyText(BASE))
    const g = pilotGrantOf(policy, 'factory', 'pilot', 'hpc-b')!
    expect(renderPilotIdentity(g.pilot.identity, { site: 'hpc-b', enrolment: 'e1', slurm_job_id: '42', node: 'n7' })).toBe('pilot+hpc-b+e1+42-n7@pilots.pool.example.org')
    expect(g.pilot.tokenLifetime).toBe(7200)
    expect(pilotGrantOf(policy, 'factory', 'pilot', 'hpc-c')).toBeUndefined()
    expect(pilotGrantOf(policy, 'other', 'pilot', 'hpc-b')).toBeUndefined()
  })
})
