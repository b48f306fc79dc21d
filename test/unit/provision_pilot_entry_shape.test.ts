// The collector entry render writes for a pilot group comes from the name the broker gives the group's pilots
// (the enrolment answer's pilot_identity, docs/provisioning.md): the text before {slurm_job_id} and {node}, one `*`,
// and the text after them. Expected entries are written out by hand from that rule.
import { describe, expect, it } from 'vitest'
import { PilotIdentityPatternError, pilotAllowEntryOf, pilotGroupAllowEntry } from '../../src/clients/provision/condor_config.ts'

const E = '0123456789abcdef0123456789abcdef'

describe('the ALLOW entry of a pilot group', () => {
  it.each([
    [`pilot+hpc+${E}+{slurm_job_id}-{node}@pilots.pool.example.org`, `pilot+hpc+${E}+*@pilots.pool.example.org`],
    [`pilot~${E}~hpc-b~{node}-{slurm_job_id}@pilots.pool.example.org`, `pilot~${E}~hpc-b~*@pilots.pool.example.org`],
    // job and node in the domain: HTCondor compares user@domain as a whole, so the `*` may stand there too
    [`hpc+${E}@{slurm_job_id}.{node}.pilots.pool.example.org`, `hpc+${E}@*.pilots.pool.example.org`],
  ])('is built from %s', (pattern, entry) => {
    expect(pilotAllowEntryOf(pattern, 'hpc')).toBe(entry)
  })

  it.each([
    // the head ends in a character a longer site's name holds: pilot-hpc-* admits pilot-hpc-b-…
    [`pilot-hpc-{slurm_job_id}-{node}@pilots.pool.example.org`],
    // nothing per pilot: no `*`, the pattern is not a pilot's
    [`pilot+hpc+${E}@pilots.pool.example.org`],
    // a placeholder the broker should have filled, or a character an ALLOW list splits on
    [`pilot+hpc+{enrolment}+{slurm_job_id}-{node}@pilots.pool.example.org`],
    [`pilot+hpc,x+{slurm_job_id}-{node}@pilots.pool.example.org`],
  ])('is refused, in one line naming the group, for %s', (pattern) => {
    expect(() => pilotAllowEntryOf(pattern, 'hpc')).toThrow(PilotIdentityPatternError)
    expect(() => pilotAllowEntryOf(pattern, 'hpc')).toThrow(/^hpc: the broker names this group's pilots .* no ALLOW entry can admit alone: [^\n]*$/)
  })

  it('is refused when the enrolment answer does not say what the pilots will be called', () => {
    expect(() => pilotGroupAllowEntry({ access_token: 'x' }, 'hpc', { site: 'hpc', enrolment: E })).toThrow(/^hpc: the broker's enrolment answer does not say what its pilots will be called \(pilot_identity\)/)
  })
})

// Defence in depth: the broker's answer is taken as the group's name only when it names the group's site and the
// credential the same answer carries, each ended as a field is (followed by one of + ~ = @, which no site label
// or jti holds). What precedes a field is the policy's literal text, which may end in any character. An answer naming another
// site or another enrolment would have the collector admit someone else's pilots, and not this group's.
describe('the pilot_identity a broker answers for a group', () => {
  const F = 'fedcba9876543210fedcba9876543210'
  const answer = (pattern: string) => ({ pilot_identity: pattern })
  it.each([
    [`pilot+hpc+${E}+{slurm_job_id}-{node}@pilots.pool.example.org`, `pilot+hpc+${E}+*@pilots.pool.example.org`],
    [`pilot~${E}~hpc~{node}-{slurm_job_id}@pilots.pool.example.org`, `pilot~${E}~hpc~*@pilots.pool.example.org`],
  ])('is accepted when it names the site and the credential: %s', (pattern, entry) => {
    expect(pilotGroupAllowEntry(answer(pattern), 'g', { site: 'hpc', enrolment: E })).toBe(entry)
  })

  it.each([
    ['another enrolment', `pilot+hpc+${F}+{slurm_job_id}-{node}@pilots.pool.example.org`],
    ['another site', `pilot+cloud-a+${E}+{slurm_job_id}-{node}@pilots.pool.example.org`],
    // a site whose label begins with this one's: hpc is followed by -, which a site label holds
    ['a site beginning with this one', `pilot+hpc-b+${E}+{slurm_job_id}-{node}@pilots.pool.example.org`],
    // the credential's id in the domain, after the `*`: not a field of the entry's head
    ['the enrolment after the job and node', `pilot+hpc+{slurm_job_id}-{node}@${E}.pilots.pool.example.org`],
  ])('is refused, in one line naming the group, site and credential, for %s', (_what, pattern) => {
    const call = () => pilotGroupAllowEntry(answer(pattern), 'g', { site: 'hpc', enrolment: E })
    expect(call).toThrow(PilotIdentityPatternError)
    expect(call).toThrow(new RegExp(`^g: the broker names this group's pilots .* which does not name site hpc and enrolment ${E} \\(the credential it just issued\\)[^\\n]*$`))
  })
})
