// Pilots are admitted at a provisioned collector by one ALLOW entry per pilot group (docs/provisioning.md), and
// the pilot's identity is what HTCondor matches it against. An entry with an `@` and no `/` is a user entry, and
// the authenticated `user@domain` is compared with it as a whole, without case, one `*` standing for any run of
// characters (HTCondor's IpVerify::lookup_user, contains_anycase_withwildcard): the matcher below is written from
// that, not taken from the code. Two things must hold for a pilot the broker mints at redemption:
// - a pilot of site `hpc-b` is not admitted by the entry of a group at site `hpc` (a site label and a dash are
//   the beginning of the other's identity under a `pilot-{site}-…` shape);
// - a pilot enrolled for one cluster is not admitted by another cluster's entry for the same site.
// The shape that keeps them apart must not cost revocation: `--site`, `--sub` and reuse detection still stop it.
import { describe, expect, it } from 'vitest'
import { pilotGroupAllowEntry } from '../../../src/clients/provision/condor_config.ts'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, IDTOKEN_TYPE, TRUST_DOMAIN, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'

const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
const now = () => Math.floor(Date.now() / 1000)
let jobs = 7000
const nextJob = () => String(++jobs)

// The shared policy's hpc-a pilot grant, given two sites where one label and a dash begin the other.
const t = await useTokenApp({ policy: (text) => text.replace('sites: [hpc-a]', 'sites: [hpc, hpc-b]') })

/** HTCondor's match of one ALLOW entry against an authenticated identity: one `*`, any run, no case. */
function condorAdmits(entry: string, identity: string): boolean {
  const e = entry.toLowerCase()
  const id = identity.toLowerCase()
  const star = e.indexOf('*')
  if (star < 0) return e === id
  const head = e.slice(0, star)
  const tail = e.slice(star + 1)
  return id.length >= head.length + tail.length && id.startsWith(head) && id.endsWith(tail)
}

/** One provisioned pilot group: its enrolment answer and the ALLOW entry render writes for it. */
async function group(site: string): Promise<{ credential: string; entry: string }> {
  const res = await t.post({
    grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }), subject_token_type: ACCESS_TOKEN_TYPE,
    requested_token_type: ENROLMENT, role: 'pilot', site, pilot_count: '4', lifetime: '3600',
  })
  const body = await res.json() as Record<string, unknown>
  expect(res.status, JSON.stringify(body)).toBe(200)
  const credential = body.access_token as string
  // The credential's own id (`ctbpe1.<claims>.<mac>`, docs/pilots.md), which render checks the answer names.
  const enrolment = (JSON.parse(Buffer.from(credential.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string }).jti
  return { credential, entry: pilotGroupAllowEntry(body, `group at ${site}`, { site, enrolment }) }
}

async function redeem(credential: string, node = 'n1'): Promise<{ token: string; sub: string; claims: Record<string, unknown> }> {
  const res = await t.post({ grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT, slurm_job_id: nextJob(), node, job_end: String(now() + 1200) })
  const body = await res.json() as { access_token: string }
  expect(res.status, JSON.stringify(body)).toBe(200)
  const claims = payloadOf(body.access_token)
  return { token: body.access_token, sub: claims.sub as string, claims }
}

const renewForm = (token: string) => ({ grant_type: GRANT_TYPE, subject_token: token, subject_token_type: IDTOKEN_TYPE })

describe('the ALLOW entry provisioning writes for a pilot group', () => {
  it('admits its own pilots', async () => {
    const g = await group('hpc')
    const p = await redeem(g.credential)
    expect(condorAdmits(g.entry, p.sub), `${g.entry} vs ${p.sub}`).toBe(true)
    expect(g.entry.split('*')).toHaveLength(2)
  })

  it('does not admit a pilot of a site its own site label and a dash begin (hpc vs hpc-b)', async () => {
    const hpc = await group('hpc')
    const hpcB = await group('hpc-b')
    const p = await redeem(hpcB.credential, 'n42')
    expect(condorAdmits(hpcB.entry, p.sub)).toBe(true)
    expect(condorAdmits(hpc.entry, p.sub), `${hpc.entry} admits ${p.sub}`).toBe(false)
  })

  it('does not admit a pilot enrolled for another cluster at the same site', async () => {
    const x = await group('hpc')
    const y = await group('hpc')
    const p = await redeem(x.credential)
    expect(condorAdmits(x.entry, p.sub)).toBe(true)
    expect(condorAdmits(y.entry, p.sub), `${y.entry} admits ${p.sub}`).toBe(false)
    // The token says which enrolment it came from, so the collector's log and the audit log tie it to its cluster.
    expect(p.claims.ctb_enrolment).toBe(payloadOfCredential(x.credential).jti)
    expect(p.claims.ctb_site).toBe('hpc')
  })
})

describe('revocation of pilots under the cluster-bound identity', () => {
  it('revoke --site stops that site\'s pilots and only them', async () => {
    const a = await redeem((await group('hpc-b')).credential)
    const b = await redeem((await group('hpc')).credential)
    await t.revocations.revoke({ kind: 'site', value: 'hpc-b' }, { principal: 'test' })
    await expectOAuthError(await t.post(renewForm(a.token)), 400, 'invalid_grant', [a.token])
    expect((await t.post(renewForm(b.token))).status).toBe(200)
  })

  it('revoke --sub of one pilot stops that pilot and not its cluster\'s others', async () => {
    const g = await group('hpc')
    const one = await redeem(g.credential, 'n1')
    const two = await redeem(g.credential, 'n2')
    await t.revocations.revoke({ kind: 'sub', value: one.sub }, { principal: 'test' })
    await expectOAuthError(await t.post(renewForm(one.token)), 400, 'invalid_grant', [one.token])
    expect((await t.post(renewForm(two.token))).status).toBe(200)
  })

  it('reuse of a renewed token revokes the pilot\'s identity by its sub', async () => {
    const p = await redeem((await group('hpc')).credential)
    const r1 = await t.post(renewForm(p.token))
    const t1 = ((await r1.json()) as { access_token: string }).access_token
    const r2 = await t.post(renewForm(t1))
    const t2 = ((await r2.json()) as { access_token: string }).access_token
    expect([r1.status, r2.status]).toEqual([200, 200])
    await expectOAuthError(await t.post(renewForm(p.token)), 400, 'invalid_grant', [p.token])
    const revoked = (await t.store.query({ type: 'token.revoked', limit: 100 })).records.map((r) => r.event.detail as Record<string, unknown>)
    expect(revoked.some((d) => JSON.stringify(d).includes(p.sub))).toBe(true)
    await expectOAuthError(await t.post(renewForm(t2)), 400, 'invalid_grant', [t2])
  })
})

function payloadOfCredential(credential: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(credential.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
}

void TRUST_DOMAIN
