import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initPoolCa } from '../../src/ca/pool_ca.ts'
import { devIamTokenRequest } from '../../src/dev_iam/dev_iam_token.ts'
import { claimsOf, exchangeForm, startE2e, type E2e } from '../support/broker_e2e.ts'

/**
 * A token IAM issued by token exchange to another client acting for the caller carries `act` (RFC 8693
 * §4.1; docs/iam-and-wlcg.md §1.4). Here the development IAM makes one the way IAM does: client `broker`
 * exchanges the provisioner's own token. Every route that takes an IAM caller's authority refuses it.
 */
describe('a delegated IAM token from a real exchange at the development IAM', () => {
  let e: E2e
  let caRoot: string
  let own: string
  let delegated: string

  beforeAll(async () => {
    caRoot = mkdtempSync(join(tmpdir(), 'ctb-delegated-ca-'))
    const caDir = join(caRoot, 'ca')
    await initPoolCa(caDir, { name: 'test pool CA', now: Math.floor(Date.now() / 1000) })
    e = await startE2e({ CTB_POLICY_DIR: 'examples/provisioning/policies', CTB_CA_DIR: caDir })
    own = await e.robot('provisioner')
    const r = await devIamTokenRequest(e.devIam, 'broker', {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: own,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', scope: 'wlcg', audience: String(claimsOf(own).aud),
    })
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    delegated = r.body.access_token as string
    expect(claimsOf(delegated)).toMatchObject({ sub: claimsOf(own).sub, act: { sub: 'broker' } })
  }, 60_000)

  afterAll(async () => {
    await e?.close()
    rmSync(caRoot, { recursive: true, force: true })
  })

  const csr = '-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----\n'

  it('POST /v1/certificates: the own token reaches the CSR check, the delegated one is refused as a caller', async () => {
    const mine = await e.postJson('/v1/certificates', { csr, role: 'schedd', dns: ['ap1.cloud-a.example.org'] }, { authorization: `Bearer ${own}` })
    expect(mine.body).toEqual({ error: 'invalid_request', error_description: 'csr is not a PEM PKCS#10 certificate request' })
    const theirs = await e.postJson('/v1/certificates', { csr, role: 'schedd', dns: ['ap1.cloud-a.example.org'] }, { authorization: `Bearer ${delegated}` })
    expect(theirs.status).toBe(401)
    expect(theirs.body).toEqual({ error: 'invalid_token', error_description: "delegation not supported: subject_token was issued to 'broker' acting for its subject (act claim); present the caller's own IAM token" })
  })

  it('POST /token: invalid_request naming the actor', async () => {
    const res = await e.post('/token', exchangeForm(delegated, 'startd', { host: 'ep-1.cloud-a.example.org' }))
    expect(res.status).toBe(400)
    expect(res.body).toEqual({ error: 'invalid_request', error_description: "delegation not supported: subject_token was issued to 'broker' acting for its subject (act claim); present the caller's own IAM token" })
  })

  it('the admin API: the delegated token of an admin opens nothing', async () => {
    const mine = await e.get('/v1/revocations', { authorization: `Bearer ${own}` })
    expect(mine.status).toBe(200)
    const theirs = await e.get('/v1/revocations', { authorization: `Bearer ${delegated}` })
    expect(theirs.status).toBe(401)
  })
})
