/**
 * An IAM user whose name is a local system account, exchanging through POST /token under the repository's
 * policies (submit-user: identity "{preferred_username}@{uid_domain}"). An execute node sharing the UID
 * domain runs such a user's jobs as the account named before the @, so the broker must refuse, and put the
 * refusal on record.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeForm, exchangeForm, IDTOKEN, JWT_TYPE, startSecurityBroker, TRUST_DOMAIN, viaApp, type SecurityBroker } from './support/security_broker.ts'

let sb: SecurityBroker
beforeAll(async () => { sb = await startSecurityBroker() })
afterAll(async () => { await sb?.close() })

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const exchange = async (name: string, extra: Record<string, string>) =>
  viaApp(sb.app, 'POST', '/token', encodeForm(exchangeForm(await sb.token.user({ preferred_username: name }), 'submit-user', extra)), FORM)

describe('POST /token: a caller named after a system account', () => {
  it('refuses daemon an IDTOKEN as daemon@<uid_domain> and audits the denial', async () => {
    const before = await sb.auditHead()
    const res = await exchange('daemon', { requested_token_type: IDTOKEN })
    expect(res.status, res.text).toBe(400)
    const description = "the caller's preferred_username 'daemon' is a reserved account name and cannot name the user of the identity of role submit-user"
    expect(res.json).toMatchObject({ error: 'unauthorized_client', error_description: description })
    expect(res.json!.access_token).toBeUndefined()
    const events = (await sb.auditSince(before)).map((r) => r.event)
    expect(events.filter((e) => e.type === 'token.issued')).toEqual([])
    expect(events.filter((e) => e.type === 'token.denied')).toEqual([expect.objectContaining({ decision: 'deny', role: 'submit-user', reason: `unauthorized_client: ${description}` })])
  })

  it('refuses nobody a SciToken whose sub would be nobody@<uid_domain>', async () => {
    const res = await exchange('nobody', { requested_token_type: JWT_TYPE, audience: 'condor://ap1.cloud-a.example.org:9618', scope: 'compute.read' })
    expect(res.status, res.text).toBe(400)
    expect(res.json).toMatchObject({ error: 'unauthorized_client', error_description: expect.stringMatching(/'nobody' is a reserved account name/) })
  })

  it('still issues alice her IDTOKEN', async () => {
    const res = await exchange('alice', { requested_token_type: IDTOKEN })
    expect(res.status, res.text).toBe(200)
    const claims = JSON.parse(Buffer.from((res.json!.access_token as string).split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
    // The security broker's UID_DOMAIN defaults to its trust domain.
    expect(claims.sub).toBe(`alice@${TRUST_DOMAIN}`)
  })
})
