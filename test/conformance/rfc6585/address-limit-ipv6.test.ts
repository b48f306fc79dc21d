// Broker decision (docs/rate-limits.md): the address limit counts an IPv6 client by its /64, since every
// IPv6 end site gets at least a /64 and one host can use a fresh address for each request; an IPv4 client
// (IPv4-mapped IPv6 included) by its address.
import { describe, expect, it } from 'vitest'
import { encodeForm, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const LIMIT = 2
const t = await useTokenApp({ env: { CTB_RATE_LIMITS_ADDRESS_REQUESTS: String(LIMIT), CTB_RATE_LIMITS_ADDRESS_PER: '1h' } })

/**
 * POST /token through the hono app as if from `address`: a loopback socket only ever has ::1 or 127.0.0.1
 * as its peer, so the Node request hono reads the peer from is given here (its body already read, so the
 * route reads the Request's).
 */
function postFrom(address: string, form: Record<string, string | string[]>): Promise<Response> {
  const incoming = { readableDidRead: true, socket: { remoteAddress: address, remotePort: 40000, remoteFamily: address.includes(':') ? 'IPv6' : 'IPv4' } }
  return Promise.resolve(t.app.request('/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: encodeForm(form) }, { incoming }))
}
const junk = (i: string) => t.form(`junk.${i}.x`)

describe('the address limit on IPv6 clients', () => {
  it('counts refusals from different addresses of one /64 together, and not those of another /64', async () => {
    expect((await postFrom('2001:db8:0:1::1', junk('a'))).status).toBe(400)
    expect((await postFrom('2001:0db8:0:1:ffff:ffff:ffff:fffe', junk('b'))).status).toBe(400)
    // A third address of the same /64 is over the limit the first two used up.
    const over = await postFrom('2001:db8:0:1::3', junk('c'))
    const body = await expectOAuthError(over, 429, 'slow_down')
    expect(body.error_description).toMatch(/^too many refused requests from this address; retry after \d+ s$/)
    // Even with a token that would verify.
    expect((await postFrom('2001:db8:0:1::4', t.form(await t.userToken({ sub: 'v6-same-64' })))).status).toBe(429)
    // The neighbouring /64 is another site.
    expect((await postFrom('2001:db8:0:2::1', junk('d'))).status).toBe(400)
    expect((await postFrom('2001:db8:0:2::1', t.form(await t.userToken({ sub: 'v6-other-64' })))).status).toBe(200)
  })

  it('counts an IPv4-mapped IPv6 peer as its IPv4 address', async () => {
    expect((await postFrom('::ffff:192.0.2.7', junk('e'))).status).toBe(400)
    expect((await postFrom('192.0.2.7', junk('f'))).status).toBe(400)
    expect((await postFrom('::ffff:192.0.2.7', junk('g'))).status).toBe(429)
    expect((await postFrom('192.0.2.8', junk('h'))).status).toBe(400)
  })
})
