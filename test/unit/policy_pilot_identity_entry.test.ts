// A pilot.identity the policy loads with is one a provisioned collector can admit (docs/policies.md, the pilot
// identity's shape): render builds the group's ALLOW entry from it and stops when it cannot. An ALLOW list is
// names separated by commas and spaces, a `*` in an entry is HTCondor's wildcard and a `/` splits user from host,
// so none of them can stand in the name; and the entry's `*` begins where the job and node do, so what comes just
// before them must be one of the field ends (+ ~ = @). A shape load took and render then refused came out only
// at the next provisioning run, after the broker had issued the cluster's tokens.
import { describe, expect, it } from 'vitest'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { formatIssue, parsePolicyFile } from '../../src/policy/load.ts'

const CTX: PolicyContext = {
  trustDomain: 'pool.example.org', uidDomain: 'pool.example.org', vars: { IAM_ISSUER: 'https://iam.example.org/' },
  scitokenProfile: 'wlcg', maxLifetime: { idtoken: 7 * 86400, scitoken: 6 * 3600 },
}

function policyWithPilotIdentity(identity: string): string {
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
        authz: [READ, ADVERTISE_STARTD, ADVERTISE_MASTER]
        lifetime: { default: 2h, max: 1d }
        pilot:
          max_count: 8
          enrolment_lifetime: { default: 1d, max: 3d }
          identity: ${JSON.stringify(identity)}
`
}

const issues = (identity: string) => parsePolicyFile('t.yaml', policyWithPilotIdentity(identity), CTX).issues.map(formatIssue)

describe('policy load: a pilot.identity no ALLOW entry can hold', () => {
  it.each([
    ['a * in the domain', 'pilot+{site}+{enrolment}+{slurm_job_id}-{node}@pilots*.{trust_domain}'],
    ['a comma and a space', 'pilot+{site}+{enrolment}+{slurm_job_id}-{node}@pilots, x.{trust_domain}'],
    ['a slash', 'pilot+{site}+{enrolment}+{slurm_job_id}-{node}@{trust_domain}/x'],
    ['a letter between the enrolment\'s end and the job', 'pilot+{site}+{enrolment}+j{slurm_job_id}-{node}@pilots.{trust_domain}'],
  ])('refuses %s, in one line naming pilot.identity', (_, identity) => {
    const found = issues(identity)
    expect(found).toHaveLength(1)
    // The line of pilot.identity in policyWithPilotIdentity, and the key path.
    expect(found[0]).toMatch(/^t\.yaml:18:\d+: rules\.0\.grants\.0\.pilot\.identity: /)
    expect(found[0]).not.toContain('\n')
  })

  it('still loads the default shape and one with other field ends', () => {
    expect(issues('pilot+{site}+{enrolment}+{slurm_job_id}-{node}@pilots.{trust_domain}')).toEqual([])
    expect(issues('pilot~{site}={enrolment}~{slurm_job_id}.{node}@pilots.{trust_domain}')).toEqual([])
  })
})
