// The SLURM pilot contract at POST /token (docs/pilots.md): an enrolment credential obtained with an IAM
// token, redeemed once per node at pilot start, and the pilot's IDTOKEN renewed until the job ends.
// Runs through hono and through serve's fast path (vitest projects http and conformance-socket).
import { createHmac } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, IDTOKEN_TYPE, TRUST_DOMAIN, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'
import { expectRetryLaterAnswer } from '../../support/retry_later_answer.ts'

const t = await useTokenApp()
// Spelled here from the contract, not imported: the wire value must not drift with the code.
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'

const factoryToken = () => t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' })
const now = () => Math.floor(Date.now() / 1000)
let jobs = 1000
const nextJob = () => String(++jobs)

async function enrol(extra: Record<string, string> = {}): Promise<{ credential: string; body: Record<string, unknown> }> {
  const res = await t.post({
    grant_type: GRANT_TYPE, subject_token: await factoryToken(), subject_token_type: ACCESS_TOKEN_TYPE,
    requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '2', lifetime: '3600', ...extra,
  })
  const body = await res.json() as Record<string, unknown>
  expect(res.status, JSON.stringify(body)).toBe(200)
  expect(res.headers.get('cache-control')).toBe('no-store')
  return { credential: body.access_token as string, body }
}

const redeemForm = (credential: string, job: string, node: string, jobEnd: number) => ({
  grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT,
  slurm_job_id: job, node, job_end: String(jobEnd),
})
/** The credential's own id (`ctbpe1.<claims>.<mac>`, docs/pilots.md): the {enrolment} of its pilots' identity. */
const enrolmentId = (credential: string) => (JSON.parse(Buffer.from(credential.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string }).jti
const renewForm = (token: string) => ({ grant_type: GRANT_TYPE, subject_token: token, subject_token_type: IDTOKEN_TYPE })

async function denials(): Promise<number> {
  return (await t.store.query({ type: 'token.denied', limit: 1000 })).records.length
}

describe('pilot enrolment', () => {
  it('issues an opaque, printable credential of the enrolment type', async () => {
    const { credential, body } = await enrol()
    expect(body).toMatchObject({ issued_token_type: ENROLMENT, token_type: 'N_A', expires_in: 3600, scope: '' })
    expect(credential.length).toBeLessThanOrEqual(4096)
    expect(credential).toMatch(/^[\x21-\x7e]+$/)
    const rec = (await t.store.query({ type: 'token.issued', limit: 5 })).records.find((r) => r.event.tokenKind === 'pilot_enrolment')
    expect(rec?.event).toMatchObject({ role: 'pilot', site: 'hpc-a', decision: 'allow' })
  })

  it('refuses a count above the policy maximum and a caller the policy does not grant, each audited', async () => {
    const before = await denials()
    await expectOAuthError(await t.post({
      grant_type: GRANT_TYPE, subject_token: await factoryToken(), subject_token_type: ACCESS_TOKEN_TYPE,
      requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '5',
    }), 400, 'invalid_request')
    await expectOAuthError(await t.post({
      grant_type: GRANT_TYPE, subject_token: await t.userToken(), subject_token_type: ACCESS_TOKEN_TYPE,
      requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1',
    }), 400, 'unauthorized_client')
    expect(await denials()).toBe(before + 2)
  })
})

describe('redemption', () => {
  it('gives each node of the job a startd token naming site, job and node, capped by the job end', async () => {
    const { credential } = await enrol()
    const job = nextJob()
    const end = now() + 600
    const res = await t.post(redeemForm(credential, job, 'node17.cluster.example.org', end))
    const body = await res.json() as Record<string, unknown>
    expect(res.status, JSON.stringify(body)).toBe(200)
    expect(body).toMatchObject({ issued_token_type: IDTOKEN_TYPE, token_type: 'N_A', scope: 'condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER' })
    const claims = payloadOf(body.access_token as string)
    expect(claims).toMatchObject({
      iss: TRUST_DOMAIN, sub: `pilot+hpc-a+${enrolmentId(credential)}+${job}-node17@pilots.${TRUST_DOMAIN}`, ctb_enrolment: enrolmentId(credential),
      ctb_role: 'pilot', ctb_site: 'hpc-a', ctb_slurm_job: job, scope: 'condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER',
    })
    expect(claims.exp).toBeLessThanOrEqual(end)
    expect(typeof claims.ctb_gen).toBe('number')
    // The second node of the same job gets its own identity.
    const second = await t.post(redeemForm(credential, job, 'node18', end))
    expect(payloadOf(((await second.json()) as { access_token: string }).access_token).sub).toBe(`pilot+hpc-a+${enrolmentId(credential)}+${job}-node18@pilots.${TRUST_DOMAIN}`)
  })

  it('caps the token at the policy lifetime when the job ends later', async () => {
    const { credential } = await enrol()
    const res = await t.post(redeemForm(credential, nextJob(), 'n1', now() + 3600))
    const body = await res.json() as { access_token: string; expires_in: number }
    expect(body.expires_in).toBe(1800)
    const c = payloadOf(body.access_token)
    expect((c.exp as number) - (c.iat as number)).toBe(1800)
  })

  it('adds DAEMON only on a site the policy marks tunneled', async () => {
    const { credential } = await enrol({ role: 'pilot-ccb', pilot_count: '1' })
    const res = await t.post(redeemForm(credential, nextJob(), 'n1', now() + 600))
    const body = await res.json() as { scope: string }
    expect(body.scope).toBe('condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER condor:/DAEMON')
  })

  it('refuses one redemption more than the count with invalid_grant, and audits it', async () => {
    const { credential } = await enrol()
    const job = nextJob()
    const end = now() + 600
    for (const node of ['a', 'b']) expect((await t.post(redeemForm(credential, job, node, end))).status).toBe(200)
    const before = await denials()
    const body = await expectOAuthError(await t.post(redeemForm(credential, job, 'c', end)), 400, 'invalid_grant', [credential])
    expect(body.error_description).toMatch(/used up/)
    expect(await denials()).toBe(before + 1)
  })

  it('gives the last slot to exactly one of two pilots racing for it', async () => {
    const { credential } = await enrol({ pilot_count: '1' })
    const job = nextJob()
    const [a, b] = await Promise.all([t.post(redeemForm(credential, job, 'x', now() + 600)), t.post(redeemForm(credential, job, 'y', now() + 600))])
    expect([a.status, b.status].sort()).toEqual([200, 400])
  })

  it('counts a forged credential in aggregate without a record of its own', async () => {
    const { credential } = await enrol()
    const forged = `${credential.slice(0, -4)}AAAA`
    const before = await denials()
    await expectOAuthError(await t.post(redeemForm(forged, nextJob(), 'n1', now() + 600)), 400, 'invalid_grant')
    expect(await denials()).toBe(before)
  })

  // The job end is the pilot's word, and every renewal believes it: unbounded, a stolen credential would
  // yield pilots renewing for years. The grant's lifetime.max (2h here: queue wait, walltime and margin)
  // bounds it, refused beyond unless the grant trims with up_to (pilot-ccb).
  it('refuses a job end further away than the grant\'s maximum lifetime, and audits it', async () => {
    const { credential } = await enrol()
    const before = await denials()
    const body = await expectOAuthError(await t.post(redeemForm(credential, nextJob(), 'n1', now() + 2 * 3600 + 60)), 400, 'invalid_request', [credential])
    expect(body.error_description).toMatch(/job_end/)
    expect(await denials()).toBe(before + 1)
    expect((await t.post(redeemForm(credential, nextJob(), 'n1', now() + 2 * 3600 - 60))).status).toBe(200)
  })

  it('trims a job end beyond the maximum lifetime to it where the grant has up_to, so renewals stop there', async () => {
    const { credential } = await enrol({ role: 'pilot-ccb', pilot_count: '1' })
    const job = nextJob()
    const start = now()
    const res = await t.post(redeemForm(credential, job, 'n1', start + 86_400 * 365))
    const body = await res.json() as { access_token: string }
    expect(res.status, JSON.stringify(body)).toBe(200)
    const jti = payloadOf(body.access_token).jti as string
    const rec = (await t.store.query({ type: 'token.issued', jti, limit: 1 })).records[0]!.event
    const jobEnd = (rec.detail?.pilot as { jobEnd: number }).jobEnd
    expect(jobEnd).toBeGreaterThanOrEqual(start + 2 * 3600)
    expect(jobEnd).toBeLessThanOrEqual(now() + 2 * 3600)
  })

  it('refuses a job end in the past as a bad request', async () => {
    const { credential } = await enrol()
    await expectOAuthError(await t.post(redeemForm(credential, nextJob(), 'n1', now() - 5)), 400, 'invalid_request')
  })

  // RFC 6749 §4.1.2.1 `temporarily_unavailable`, RFC 9110 §15.6.4: a store outage is a 503 with Retry-After,
  // which the pilot script retries; a bug in the write path stays 500 server_error. No token either way.
  it('fails closed: no pilot token when the redemption cannot be recorded (store outage: 503, Retry-After)', async () => {
    const { credential } = await enrol()
    t.audit.failing = true
    const res = await t.post(redeemForm(credential, nextJob(), 'n1', now() + 600))
    await expectRetryLaterAnswer(res, 'access_token')
  })

  it('fails closed: no pilot token when the redemption write fails with a bug (500 server_error)', async () => {
    const { credential } = await enrol()
    t.audit.mode = 'broken'
    const res = await t.post(redeemForm(credential, nextJob(), 'n1', now() + 600))
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: 'server_error' })
  })
})

describe('renewal', () => {
  async function pilot(end = now() + 600): Promise<{ token: string; job: string }> {
    const { credential } = await enrol()
    const job = nextJob()
    const res = await t.post(redeemForm(credential, job, 'n1', end))
    return { token: ((await res.json()) as { access_token: string }).access_token, job }
  }

  it('renews for the same job and node with a fresh jti, never past the recorded job end, audited with a link', async () => {
    const end = now() + 600
    const { token } = await pilot(end)
    // A renewal that claims a later job end is not believed: only the end recorded at redemption counts.
    const res = await t.post({ ...renewForm(token), job_end: String(end + 86400) })
    const body = await res.json() as { access_token: string; issued_token_type: string }
    expect(res.status, JSON.stringify(body)).toBe(200)
    expect(body.issued_token_type).toBe(IDTOKEN_TYPE)
    const old = payloadOf(token)
    const fresh = payloadOf(body.access_token)
    expect(fresh.sub).toBe(old.sub)
    expect(fresh.ctb_slurm_job).toBe(old.ctb_slurm_job)
    expect(fresh.jti).not.toBe(old.jti)
    expect(fresh.exp).toBeLessThanOrEqual(end)
    const rec = (await t.store.query({ type: 'token.renewed', jti: fresh.jti as string, limit: 1 })).records[0]
    expect(rec?.event.detail?.replaces).toBe(old.jti)
    // The renewed token renews in turn.
    expect((await t.post(renewForm(body.access_token))).status).toBe(200)
    // The token it replaced does not, now that its successor is in use: that is reuse, a forked chain
    // (RFC 9700 §4.14.2; lost-answer retries and the rest: pilot_token_reuse.test.ts).
    await expectOAuthError(await t.post(renewForm(token)), 400, 'invalid_grant', [token])
  })

  it('counts a forged pilot token in aggregate without a record of its own', async () => {
    const { token } = await pilot()
    const [h, p] = token.split('.')
    const forged = `${h}.${p}.${createHmac('sha256', 'not the pool key').update(`${h}.${p}`).digest('base64url')}`
    const before = await denials()
    await expectOAuthError(await t.post(renewForm(forged)), 400, 'invalid_grant')
    expect(await denials()).toBe(before)
  })

  it('stops at once when the pilot job is revoked', async () => {
    const { token, job } = await pilot()
    await t.revocations.revoke({ kind: 'pilot-job', value: `hpc-a:${job}` }, { principal: 'test' })
    await expectOAuthError(await t.post(renewForm(token)), 400, 'invalid_grant')
  })

  it('renews again once the pilot-job revocation is lifted', async () => {
    const { token, job } = await pilot()
    const rev = await t.revocations.revoke({ kind: 'pilot-job', value: `hpc-a:${job}` }, { principal: 'test' })
    await expectOAuthError(await t.post(renewForm(token)), 400, 'invalid_grant')
    await t.revocations.lift(rev.id, { reason: 'job was fine' }, { principal: 'test' })
    const lift = (await t.store.query({ type: 'token.unrevoked', limit: 1 })).records[0]?.event
    expect(lift).toMatchObject({ site: 'hpc-a', detail: { pilotJob: `hpc-a:${job}`, lift: { id: rev.id } } })
    expect((await t.post(renewForm(token))).status).toBe(200)
  })

  it('stops when the enrolment credential it was redeemed with is revoked (a cluster teardown)', async () => {
    const { credential } = await enrol()
    const job = nextJob()
    const res = await t.post(redeemForm(credential, job, 'n1', now() + 600))
    const token = ((await res.json()) as { access_token: string }).access_token
    expect((await t.post(renewForm(token))).status).toBe(200)
    // The enrolment's jti, as the audit (and a provisioning manifest) records it.
    const issued = (await t.store.query({ type: 'token.issued', limit: 1000 })).records.map((r) => r.event).filter((e) => e.tokenKind === 'pilot_enrolment')
    const enrolmentJti = issued[0]?.jti
    expect(enrolmentJti).toBeTypeOf('string')
    await t.revocations.revoke({ kind: 'jti', value: enrolmentJti! }, { principal: 'test' })
    await expectOAuthError(await t.post(renewForm(token)), 400, 'invalid_grant')
  })

  it('stops the pilots of a revoked enrolment and its redemptions, not another enrolment\'s pilot of the same site and job id', async () => {
    // Two clusters at site hpc-a, each with its own enrolment, whose SLURM clusters both ran a job with this id.
    const job = nextJob()
    const a = await enrol()
    const b = await enrol()
    const tokenOf = async (credential: string, node: string) => ((await (await t.post(redeemForm(credential, job, node, now() + 600))).json()) as { access_token: string }).access_token
    const ta = await tokenOf(a.credential, 'n1')
    const tb = await tokenOf(b.credential, 'n1')
    await t.revocations.revoke({ kind: 'pilot-enrolment', value: enrolmentId(a.credential) }, { principal: 'test' })
    const refused = await expectOAuthError(await t.post(renewForm(ta)), 400, 'invalid_grant', [ta])
    expect(refused.error_description).toMatch(/revoked/)
    // The credential's remaining slot is no longer redeemable either.
    const redeemed = await expectOAuthError(await t.post(redeemForm(a.credential, job, 'n2', now() + 600)), 400, 'invalid_grant', [a.credential])
    expect(redeemed.error_description).toBe('the pilot enrolment credential has been revoked')
    expect((await t.post(renewForm(tb))).status).toBe(200)
    expect((await t.post(redeemForm(b.credential, job, 'n2', now() + 600))).status).toBe(200)
  })

  // Last: the site revocation stops every later hpc-a pilot of this app.
  it('stops when the pilot identity or the site is revoked', async () => {
    const a = await pilot()
    await t.revocations.revoke({ kind: 'sub', value: payloadOf(a.token).sub as string }, { principal: 'test' })
    await expectOAuthError(await t.post(renewForm(a.token)), 400, 'invalid_grant')
    const b = await pilot()
    await t.revocations.revoke({ kind: 'site', value: 'hpc-a' }, { principal: 'test' })
    await expectOAuthError(await t.post(renewForm(b.token)), 400, 'invalid_grant')
  })

  it('refuses an IDTOKEN the broker signed that is not a recorded pilot token, with one record', async () => {
    const res = await t.post({ grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-monitoring' }), subject_token_type: ACCESS_TOKEN_TYPE, role: 'monitoring' })
    const monitor = ((await res.json()) as { access_token: string }).access_token
    const before = await denials()
    await expectOAuthError(await t.post(renewForm(monitor)), 400, 'invalid_grant', [monitor])
    expect(await denials()).toBe(before + 1)
  })

})
