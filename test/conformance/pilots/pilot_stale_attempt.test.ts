// A renewal attempt minted before the answer the pilot already has (docs/pilots.md, "A late first attempt"): an
// attempt held up before its commit past curl's --max-time, whose retry committed first, or an honest retry
// judged on a replica whose clock lags the one that answered. Either way the pilot holds the newer token, so the
// attempt is refused with 503 (the sbatch pilot retries a 503, it stops on a 400), recorded, and it retires and
// revokes nothing. The broker's clock is driven here: a second replica's lagging clock, in one process.
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, IDTOKEN_TYPE, payloadOf, useTokenApp } from '../support/token_app.ts'

let clockNow = Math.floor(Date.now() / 1000)
const t = await useTokenApp({ clock: { now: () => clockNow } })
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'

async function pilot(): Promise<{ token: string; sub: string }> {
  const enrol = await t.post({
    grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }), subject_token_type: ACCESS_TOKEN_TYPE,
    requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1', lifetime: '3600',
  })
  const credential = ((await enrol.json()) as { access_token: string }).access_token
  const res = await t.post({ grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT, slurm_job_id: '8801', node: 'n1', job_end: String(clockNow + 1200) })
  const token = ((await res.json()) as { access_token: string }).access_token
  expect(res.status).toBe(200)
  return { token, sub: payloadOf(token).sub as string }
}

const renew = (token: string) => t.post({ grant_type: GRANT_TYPE, subject_token: token, subject_token_type: IDTOKEN_TYPE })

describe('a renewal attempt older than the answer already given', () => {
  it('is refused with 503 and recorded, retires nothing and revokes nothing; a later retry gets through', async () => {
    const p = await pilot()
    clockNow += 100
    const first = await renew(p.token)
    expect(first.status).toBe(200)
    const held = ((await first.json()) as { access_token: string }).access_token
    // The same token again, minted 20 s before the answer above was.
    clockNow -= 20
    const late = await renew(p.token)
    expect(late.status).toBe(503)
    expect(late.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(await late.json()).toMatchObject({ error: 'temporarily_unavailable' })
    const denied = (await t.store.query({ type: 'token.denied', limit: 100 })).records.map((r) => r.event)
      .filter((e) => (e.detail?.stale as { jti?: string } | undefined)?.jti === payloadOf(p.token).jti)
    expect(denied).toHaveLength(1)
    expect(denied[0]!.detail?.stale).toEqual({ jti: payloadOf(p.token).jti, successor: payloadOf(held).jti })
    expect((await t.store.listRevocations()).filter((r) => r.value === p.sub)).toEqual([])
    // What the pilot holds was not retired.
    clockNow += 60
    const next = await renew(held)
    expect(next.status).toBe(200)
  })

  it('lets a retry minted after the answer through as a lost answer\'s retry', async () => {
    const p = await pilot()
    clockNow += 100
    expect((await renew(p.token)).status).toBe(200)
    clockNow += 5
    expect((await renew(p.token)).status).toBe(200)
  })
})
