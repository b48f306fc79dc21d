import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devIamTokenRequest } from '../../src/dev_iam/dev_iam_token.ts'
import { cli } from '../support/cli.ts'
import { claimsOf, exchangeForm, IDTOKEN, JWT, startE2e, type E2e } from '../support/broker_e2e.ts'

/**
 * The broker's main job over real sockets: IAM tokens from the development IAM exchanged at POST /token
 * for each role of the example federation (policies/), the IDTOKENs verified with the pool key.
 */
describe('POST /token against the development IAM', () => {
  let e: E2e
  beforeAll(async () => { e = await startE2e() })
  afterAll(async () => { await e?.close() })

  it.each([
    ['central-manager', 'ctb-cloud-a-cm', { host: 'cm.cloud-a.example.org' }, 'condor@pool.example.org', 'condor:/NEGOTIATOR condor:/ADVERTISE_MASTER condor:/READ'],
    ['schedd', 'ctb-cloud-a-ap', { host: 'ap1.cloud-a.example.org' }, 'schedd-ap1@aps.pool.example.org', 'condor:/ADVERTISE_SCHEDD condor:/ADVERTISE_MASTER condor:/READ'],
    ['credd', 'ctb-cloud-a-ap', { host: 'ap1.cloud-a.example.org' }, 'credd-ap1@aps.pool.example.org', 'condor:/DAEMON'],
    ['startd', 'ctb-cloud-a-provisioner', { host: 'ep-17.cloud-a.example.org' }, 'startd-cloud-a-ep-17@eps.pool.example.org', 'condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER condor:/READ'],
    ['pilot', 'ctb-hpc-b-pilot-factory', { site: 'hpc-b', slurm_job_id: '4242' }, 'pilot-hpc-b-4242@pilots.pool.example.org', 'condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER condor:/READ'],
    ['monitoring', 'ctb-monitoring', {}, 'monitor@pool.example.org', 'condor:/READ'],
  ])('issues a %s IDTOKEN to %s that verifies with the pool key', async (role, client, extra, sub, scope) => {
    const res = await e.post('/token', exchangeForm(await e.robot(client), role, { requested_token_type: IDTOKEN, ...extra }))
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.body).toMatchObject({ issued_token_type: IDTOKEN, token_type: 'N_A', scope })
    const token = res.body.access_token as string
    const claims = claimsOf(token)
    expect(claims).toMatchObject({ iss: 'pool.example.org', sub, scope, ctb_role: role })
    expect(claims.exp).toBe((claims.iat as number) + (res.body.expires_in as number))
    const ins = await cli(['token', 'inspect', token, '--key-file', `${e.env.CTB_DATA_DIR}/keys/condor/broker1`, '--trust-domain', 'pool.example.org'], e.env)
    expect(ins.out).toMatch(/signature: valid/)
    expect(ins.code).toBe(0)
  })

  it('exchanges a token the development IAM minted for the broker, and refuses one minted for another service', async () => {
    // Asking for no audience: the development IAM names the broker, so the README's exchange works.
    const forBroker = await e.robot('ctb-cloud-a-provisioner')
    expect(claimsOf(forBroker).aud).toBe(e.broker.services.config.issuer)
    const form = { requested_token_type: IDTOKEN, host: 'ep-17.cloud-a.example.org' }
    expect((await e.post('/token', exchangeForm(forBroker, 'startd', form))).status).toBe(200)
    // The same robot's token for some other service must not be exchangeable here (confused deputy).
    const r = await devIamTokenRequest(e.devIam, 'ctb-cloud-a-provisioner', { grant_type: 'client_credentials', scope: 'wlcg', audience: 'https://storage.example.org' })
    const forOther = r.body.access_token as string
    expect(claimsOf(forOther).aud).toBe('https://storage.example.org')
    const res = await e.post('/token', exchangeForm(forOther, 'startd', form))
    expect(res.status).toBe(400)
    expect(res.body).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/audience/) })
  })

  it('issues a submit-user IDTOKEN and a WLCG SciToken to alice, and a job token', async () => {
    const alice = await e.user('alice')
    const id = await e.post('/token', exchangeForm(alice, 'submit-user'))
    expect(id.status, JSON.stringify(id.body)).toBe(200)
    expect(claimsOf(id.body.access_token as string)).toMatchObject({ sub: 'alice@pool.example.org', scope: 'condor:/READ condor:/WRITE' })
    const sci = await e.post('/token', exchangeForm(alice, 'submit-user', { requested_token_type: JWT, audience: 'condor://ap1.cloud-a.example.org:9618', scope: 'compute.read compute.create compute.modify compute.cancel', lifetime: '1200' }))
    expect(sci.status, JSON.stringify(sci.body)).toBe(200)
    expect(sci.body).toMatchObject({ issued_token_type: JWT, token_type: 'Bearer', expires_in: 1200, scope: 'compute.read compute.create compute.modify compute.cancel' })
    expect(claimsOf(sci.body.access_token as string)).toMatchObject({ iss: e.broker.services.config.issuer, sub: 'alice@pool.example.org', aud: 'condor://ap1.cloud-a.example.org:9618', 'wlcg.ver': '1.0' })
    const ins = await cli(['token', 'inspect', sci.body.access_token as string], e.env)
    expect(ins.code, ins.out).toBe(0)
    const job = await e.post('/token', exchangeForm(alice, 'job'))
    expect(job.status).toBe(200)
    expect(job.body.expires_in).toBe(1200)
  })

  it('refuses carol (no group) with unauthorized_client and audits the denial', async () => {
    const res = await e.post('/token', exchangeForm(await e.user('carol'), 'submit-user'))
    expect(res.status).toBe(400)
    expect(res.body.error).toBe('unauthorized_client')
    const page = await e.broker.services.store.query({ limit: 10, decision: 'deny' })
    expect(page.records.some((r) => r.event.role === 'submit-user' && r.event.reason?.startsWith('unauthorized_client'))).toBe(true)
  })

  it('refuses more scope or lifetime than the policy allows', async () => {
    const ap = await e.robot('ctb-cloud-a-ap')
    const wide = await e.post('/token', exchangeForm(ap, 'schedd', { host: 'ap1.cloud-a.example.org', scope: 'condor:/ADVERTISE_SCHEDD condor:/WRITE' }))
    expect(wide.body.error).toBe('invalid_scope')
    const long = await e.post('/token', exchangeForm(ap, 'schedd', { host: 'ap1.cloud-a.example.org', lifetime: String(30 * 86400) }))
    expect(long.body.error).toBe('invalid_request')
    const narrow = await e.post('/token', exchangeForm(ap, 'schedd', { host: 'ap1.cloud-a.example.org', scope: 'condor:/READ' }))
    expect(narrow.status).toBe(200)
    expect(narrow.body.scope).toBe('condor:/READ')
  })

  it('takes the site from the policy: a cloud-a provisioner cannot label its token hpc-b, and gets cloud-a unasked', async () => {
    const prov = await e.robot('ctb-cloud-a-provisioner')
    const other = await e.post('/token', exchangeForm(prov, 'startd', { host: 'ep-5.cloud-a.example.org', site: 'hpc-b' }))
    expect(other.status).toBe(400)
    expect(other.body.error).toBe('unauthorized_client')
    const unasked = await e.post('/token', exchangeForm(prov, 'startd', { host: 'ep-5.cloud-a.example.org' }))
    expect(unasked.status, JSON.stringify(unasked.body)).toBe(200)
    const claims = claimsOf(unasked.body.access_token as string)
    expect(claims.ctb_site).toBe('cloud-a')
    const hpcB = await e.broker.services.store.query({ limit: 100, site: 'hpc-b' })
    expect(hpcB.records.filter((r) => r.event.caller?.client_id === 'ctb-cloud-a-provisioner')).toEqual([])
    const issued = await e.broker.services.store.query({ limit: 1, jti: claims.jti as string, type: 'token.issued' })
    expect(issued.records[0]?.event.site).toBe('cloud-a')
  })

  it('refuses a forged, tampered or foreign subject token without a 500', async () => {
    const good = await e.robot('ctb-monitoring')
    const [h, p] = good.split('.')
    for (const bad of [`${h}.${p}.AAAA`, 'not-a-jwt', `${h}.${p}`, `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`]) {
      const res = await e.post('/token', exchangeForm(bad, 'monitoring'))
      expect(res.status).toBe(400)
      expect(res.body.error).toBe('invalid_request')
      expect(JSON.stringify(res.body)).not.toContain(p!.slice(0, 20))
    }
  })

  it('every issued token has a committed audit record and the chain verifies', async () => {
    const issued = await e.broker.services.store.query({ limit: 100, decision: 'allow', type: 'token.issued' })
    expect(issued.records.length).toBeGreaterThanOrEqual(9)
    expect(await e.broker.services.store.verify()).toMatchObject({ ok: true })
  })

  it('alice (in /ctb-admins) reads the audit log with her IAM token; carol cannot', async () => {
    const ok = await e.get('/v1/audit?limit=5', { authorization: `Bearer ${await e.user('alice')}` })
    expect(ok.status, JSON.stringify(ok.body)).toBe(200)
    expect(Array.isArray(ok.body.records)).toBe(true)
    const no = await e.get('/v1/audit?limit=5', { authorization: `Bearer ${await e.user('carol')}` })
    expect(no.status).toBe(401)
  })

  it('an IAM admin revokes a pilot by sub; the HTCondor expression and the broker both refuse its token', async () => {
    const pilot = await e.post('/token', exchangeForm(await e.robot('ctb-hpc-b-pilot-factory'), 'pilot', { site: 'hpc-b', slurm_job_id: '777' }))
    expect(pilot.status).toBe(200)
    const claims = claimsOf(pilot.body.access_token as string)
    expect(claims).toMatchObject({ sub: 'pilot-hpc-b-777@pilots.pool.example.org', ctb_site: 'hpc-b' })
    const admin = { authorization: `Bearer ${await e.user('alice')}` }
    const rev = await e.postJson('/v1/revocations', { sub: claims.sub, reason: 'compromised worker node' }, admin)
    expect(rev.status, JSON.stringify(rev.body)).toBe(201)
    const expr = await e.get('/v1/revocations/condor?format=json', admin)
    expect(expr.status).toBe(200)
    expect(String(expr.body.expr)).toContain('pilot-hpc-b-777@pilots.pool.example.org')
    expect(e.broker.services.revocations.isRevoked(claims)).toBe(true)
    const revoked = await e.broker.services.store.query({ limit: 5, type: 'token.revoked' })
    expect(revoked.records[0]?.event.reason).toMatch(/compromised/)
    const noAdmin = await e.postJson('/v1/revocations', { sub: 'x@y' }, { authorization: `Bearer ${await e.user('carol')}` })
    expect(noAdmin.status).toBe(401)
  })
})
