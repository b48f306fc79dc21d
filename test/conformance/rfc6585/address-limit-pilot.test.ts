// docs/rate-limits.md: the address limit counts an address's refused unauthenticated requests, and applies to
// SLURM pilot requests as to every request. A forged or corrupt enrolment credential, or pilot IDTOKEN, names
// nobody, so its refusal is unauthenticated: it must count, or a client looping on one is never turned away.
import { describe, expect, it } from 'vitest'
import { GRANT_TYPE, IDTOKEN_TYPE, encodeForm, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const LIMIT = 2
const t = await useTokenApp({ env: { CTB_RATE_LIMITS_ADDRESS_REQUESTS: String(LIMIT), CTB_RATE_LIMITS_ADDRESS_PER: '1h' } })
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'

/** As address-limit-ipv6.test.ts: the hono app, with the peer address given. */
function postFrom(address: string, form: Record<string, string>): Promise<Response> {
  const incoming = { readableDidRead: true, socket: { remoteAddress: address, remotePort: 40000, remoteFamily: 'IPv4' } }
  return Promise.resolve(t.app.request('/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: encodeForm(form) }, { incoming }))
}
const end = () => String(Math.floor(Date.now() / 1000) + 600)
const forgedCredential = (i: string): Record<string, string> => ({
  grant_type: GRANT_TYPE, subject_token: `ctbpe1.e30.forged${i}`, subject_token_type: ENROLMENT, slurm_job_id: '1', node: 'n1', job_end: end(),
})
const forgedIdToken = (i: string): Record<string, string> => ({ grant_type: GRANT_TYPE, subject_token: `eyJhbGciOiJIUzI1NiJ9.e30.forged${i}`, subject_token_type: IDTOKEN_TYPE })

describe('the address limit on pilot requests', () => {
  it('counts refused forged enrolment credentials and turns the address away past the limit', async () => {
    expect((await postFrom('192.0.2.10', forgedCredential('a'))).status).toBe(400)
    expect((await postFrom('192.0.2.10', forgedCredential('b'))).status).toBe(400)
    await expectOAuthError(await postFrom('192.0.2.10', forgedCredential('c')), 429, 'slow_down')
    // Another address is not affected.
    expect((await postFrom('192.0.2.11', forgedCredential('d'))).status).toBe(400)
  })

  it('counts refused forged pilot IDTOKENs too', async () => {
    expect((await postFrom('192.0.2.20', forgedIdToken('a'))).status).toBe(400)
    expect((await postFrom('192.0.2.20', forgedIdToken('b'))).status).toBe(400)
    await expectOAuthError(await postFrom('192.0.2.20', forgedIdToken('c')), 429, 'slow_down')
  })
})
