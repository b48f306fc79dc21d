// A pilot identity is what reuse detection revokes (docs/pilots.md, "Renewal chains and reuse": `kind: sub`, the
// identity as redeemed) and what an admin revokes to stop one node. A revocation names at most 256 printable
// characters with no `"`, `\` or `$`, since it reaches HTCondor inside a ClassAd string through the config
// reader (docs/htcondor-tokens.md §2.4). A pilot template may spell its literal part as it likes and its
// placeholders add up to 64 + 22 + 63 characters, so a rendered identity can be one no revocation can name:
// the broker must refuse to mint it, or a forked chain under it could never be stopped.
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
const now = () => Math.floor(Date.now() / 1000)
// The pilot blocks of the shared policy's two pilot grants (hpc-a's role pilot, hpc-t's role pilot-ccb), which
// name no identity of their own (so the default's): each gets one here.
const PILOT_A = '        pilot:\n          max_count: 4\n'
const PILOT_T = '        pilot:\n          max_count: 2\n'
// A template within the policy's 255 characters; the job id and node a pilot sends (22 and 60 here) lengthen it.
const LONG = 'p'.repeat(150)
const LONG_JOB = '123456789012_123456789'
const LONG_NODE = 'n'.repeat(60)

const t = await useTokenApp({
  policy: (text) => text
    .replace(PILOT_A, `${PILOT_A}          identity: pilot$x+{site}+{enrolment}+{slurm_job_id}-{node}@pilots.{trust_domain}\n`)
    .replace(PILOT_T, `${PILOT_T}          identity: ${LONG}+{site}+{enrolment}+{slurm_job_id}-{node}@pilots.{trust_domain}\n`),
})

async function refusedRedemption(role: string, rendered: string, job = '9001', node = 'n1') {
  const enrol = await t.post({
    grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }), subject_token_type: ACCESS_TOKEN_TYPE,
    requested_token_type: ENROLMENT, role, pilot_count: '1', lifetime: '3600',
  })
  const answer = (await enrol.json()) as { access_token: string }
  expect(enrol.status, JSON.stringify(answer)).toBe(200)
  const credential = answer.access_token
  // The revocation service itself refuses to name this identity: that is why minting it must not happen.
  await expect(t.revocations.revoke({ kind: 'sub', value: rendered }, { principal: 'test' })).rejects.toThrow(/sub must be 1 to 256 printable ASCII characters/)
  const res = await t.post({ grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT, slurm_job_id: job, node, job_end: String(now() + 1200) })
  const body = await expectOAuthError(res, 400, 'invalid_request', [credential])
  expect(body.error_description).toMatch(/could not be revoked/)
  const issued = (await t.store.query({ type: 'token.issued', limit: 100 })).records.filter((r) => r.event.tokenKind === 'idtoken')
  expect(issued).toEqual([])
}

describe('pilot identities a revocation could not name', () => {
  it('refuses to mint a pilot token whose identity holds a character a revocation refuses', async () => {
    await refusedRedemption('pilot', 'pilot$x-hpc-a-9001-n1@pilots.pool.example.org')
  })

  it('refuses to mint a pilot token whose identity renders longer than a revocation names', async () => {
    await refusedRedemption('pilot-ccb', `${LONG}-hpc-t-${LONG_JOB}-${LONG_NODE}@pilots.pool.example.org`, LONG_JOB, LONG_NODE)
  })
})
