// A requeued or preempted SLURM job starts again under the same job id with SLURM_RESTART_COUNT one higher
// (sbatch(1), OUTPUT ENVIRONMENT VARIABLES), and its pilot must get a startd token again (docs/pilots.md,
// "Requeued and preempted jobs"). The restart count it states is bounded by the grant's pilot.max_restarts
// (2 when the policy names none, as the hpc-a grant here; 0 for the pilot-ccb grant), each redemption is
// its own audit record, and revoking the job still stops it.
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
// Spelled here from the contract, not imported: the wire value must not drift with the code.
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'

const now = () => Math.floor(Date.now() / 1000)
let jobs = 7000
const nextJob = () => String(++jobs)

async function enrol(role: string, count: number): Promise<string> {
  const res = await t.post({
    grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }),
    subject_token_type: ACCESS_TOKEN_TYPE, requested_token_type: ENROLMENT, role, pilot_count: String(count), lifetime: '3600',
  })
  const body = await res.json() as { access_token: string }
  expect(res.status, JSON.stringify(body)).toBe(200)
  return body.access_token
}

const redeem = (credential: string, job: string, node: string, restart?: string) => t.post({
  grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT,
  slurm_job_id: job, node, job_end: String(now() + 600), ...(restart !== undefined ? { slurm_restart_count: restart } : {}),
})

const renew = (token: string) => t.post({ grant_type: GRANT_TYPE, subject_token: token, subject_token_type: 'urn:htcondor:token-type:idtoken' })

/** The records of job `job`'s redemptions and refusals, oldest first. */
async function recordsOf(job: string) {
  const issued = (await t.store.query({ type: 'token.issued', limit: 1000 })).records
    .filter((r) => (r.event.detail as { slurmJob?: string } | undefined)?.slurmJob === job)
  return issued.sort((a, b) => a.seq - b.seq).map((r) => r.event)
}

describe('a requeued pilot job', () => {
  it('redeems again under the same job id for each restart up to the default bound of 2, one audit record each', async () => {
    const credential = await enrol('pilot', 4)
    const job = nextJob()
    const subs: string[] = []
    for (const restart of [undefined, '1', '2']) {
      const res = await redeem(credential, job, 'wn01', restart)
      const body = await res.json() as { access_token: string }
      expect(res.status, JSON.stringify(body)).toBe(200)
      subs.push(payloadOf(body.access_token).sub as string)
    }
    // The same job and node: the same pilot identity on every run.
    expect(new Set(subs).size).toBe(1)
    const recs = await recordsOf(job)
    expect(recs.map((e) => (e.detail as { pilot: { restart: number } }).pilot.restart)).toEqual([0, 1, 2])
  })

  it('refuses a restart count above the bound, audited as a denial naming the credential\'s caller', async () => {
    const credential = await enrol('pilot', 4)
    const job = nextJob()
    const before = (await t.store.query({ type: 'token.denied', limit: 1000 })).records.length
    const body = await expectOAuthError(await redeem(credential, job, 'wn01', '3'), 400, 'invalid_grant')
    expect(body.error_description).toBe('slurm_restart_count 3 is above the 2 restarts role pilot allows')
    const denied = (await t.store.query({ type: 'token.denied', limit: 1000 })).records
    expect(denied.length).toBe(before + 1)
    expect(denied.map((r) => r.event).find((e) => e.reason?.includes('slurm_restart_count 3 is above'))).toMatchObject({ role: 'pilot', site: 'hpc-a', decision: 'deny' })
    // The refusal took no slot: the credential still redeems four times.
    for (const r of ['0', '1', '2', '2']) expect((await redeem(credential, job, 'wn01', r)).status).toBe(200)
    await expectOAuthError(await redeem(credential, job, 'wn01', '1'), 400, 'invalid_grant')
  })

  it('honours a grant\'s own pilot.max_restarts (0: no restart redeems)', async () => {
    const credential = await enrol('pilot-ccb', 2)
    const job = nextJob()
    const body = await expectOAuthError(await redeem(credential, job, 'wn01', '1'), 400, 'invalid_grant')
    expect(body.error_description).toBe('slurm_restart_count 1 is above the 0 restarts role pilot-ccb allows')
    expect((await redeem(credential, job, 'wn01', '0')).status).toBe(200)
  })

  it('is stopped by revoking the job: a restart of a revoked job redeems nothing', async () => {
    const credential = await enrol('pilot', 4)
    const job = nextJob()
    expect((await redeem(credential, job, 'wn01')).status).toBe(200)
    await t.revocations.revoke({ kind: 'pilot-job', value: `hpc-a:${job}` }, { principal: 'test' })
    await expectOAuthError(await redeem(credential, job, 'wn01', '1'), 400, 'invalid_grant')
  })

  // docs/pilots.md: the previous run's tokens are not revoked by a new run's redemption (a thief claiming a higher
  // restart count must not be able to end live pilots), each run's renewal records carry its own restart, and
  // revoking the job or the pilot identity stops every run.
  it.each(['pilot-job', 'sub'] as const)('renews each run\'s token under its own restart, and revoking by %s stops both runs', async (kind) => {
    const credential = await enrol('pilot', 4)
    const job = nextJob()
    const tokenOf = async (res: Response) => { const b = await res.json() as { access_token: string }; expect(res.status, JSON.stringify(b)).toBe(200); return b.access_token }
    const run0 = await tokenOf(await redeem(credential, job, 'wn01'))
    const run1 = await tokenOf(await redeem(credential, job, 'wn01', '1'))
    expect(payloadOf(run1).sub).toBe(payloadOf(run0).sub)
    const renewed0 = await tokenOf(await renew(run0))
    const renewed1 = await tokenOf(await renew(run1))
    const renewals = (await t.store.query({ type: 'token.renewed', limit: 1000 })).records.map((r) => r.event)
      .filter((e) => e.jti === payloadOf(renewed0).jti || e.jti === payloadOf(renewed1).jti)
      .map((e) => [e.jti, (e.detail as { pilot: { restart: number } }).pilot.restart])
    expect(new Map(renewals as [string, number][])).toEqual(new Map([[payloadOf(renewed0).jti as string, 0], [payloadOf(renewed1).jti as string, 1]]))
    const value = kind === 'pilot-job' ? `hpc-a:${job}` : String(payloadOf(run0).sub)
    await t.revocations.revoke({ kind, value }, { principal: 'test' })
    for (const token of [renewed0, renewed1]) await expectOAuthError(await renew(token), 400, 'invalid_grant')
  })

  it.each(['-1', '1.5', 'x', '10000'])('refuses slurm_restart_count %s as invalid_request', async (value) => {
    const credential = await enrol('pilot', 1)
    await expectOAuthError(await redeem(credential, nextJob(), 'wn01', value), 400, 'invalid_request')
  })
})
