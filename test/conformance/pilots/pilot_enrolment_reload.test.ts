// An enrolment answer says what its pilots will be called (pilot_identity, docs/pilots.md §1). The broker decides
// the enrolment, commits its audit record, then answers; a policy reload (SIGHUP, a change in policy_dir) may land
// while the record commits. The answer must then still be the one the decision made: an OAuth answer either way,
// never a 500 (house rule), and a pilot_identity naming the credential just issued, under the policy that allowed it.
import { readFileSync, writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../../src/audit/audit_log.ts'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, useTokenApp } from '../support/token_app.ts'

const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'

const t = await useTokenApp()

/** Runs `during` once, right after the next audit record commits (the window between decision and answer). */
function onNextRecord(during: () => void): void {
  const record = t.audit.record.bind(t.audit)
  t.audit.record = async (e: AuditEvent) => {
    await record(e)
    t.audit.record = record
    during()
  }
}

describe('an enrolment whose policy is reloaded while its record commits', () => {
  it('answers with the pilot identity of the policy that allowed it, not a 500', async () => {
    const before = readFileSync(t.policyFile, 'utf8')
    // The reload drops the grant's site: the next redemption is refused, but this enrolment was already allowed.
    onNextRecord(() => {
      writeFileSync(t.policyFile, before.replace('sites: [hpc-a]', 'sites: [hpc-z]'))
      expect(t.policy.reload().ok).toBe(true)
    })
    try {
      const res = await t.post({
        grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }), subject_token_type: ACCESS_TOKEN_TYPE,
        requested_token_type: ENROLMENT, role: 'pilot', site: 'hpc-a', pilot_count: '2', lifetime: '600',
      })
      const body = await res.json() as Record<string, unknown>
      expect(res.status, JSON.stringify(body)).toBe(200)
      // The credential is ctbpe1.<base64url JSON claims>.<MAC> (docs/pilots.md).
      const jti = JSON.parse(Buffer.from((body.access_token as string).split('.')[1]!, 'base64url').toString('utf8')).jti as string
      // The default identity (the grant names no pilot.identity), with site and this credential's id filled in.
      expect(body.pilot_identity).toBe(`pilot+hpc-a+${jti}+{slurm_job_id}-{node}@pilots.pool.example.org`)
    } finally {
      writeFileSync(t.policyFile, before)
      t.policy.reload()
    }
  })
})
