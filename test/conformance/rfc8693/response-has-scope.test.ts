// RFC 8693 §2.2.1: "scope OPTIONAL if the scope of the issued security token is identical to the scope
// requested by the client; otherwise, it is REQUIRED." docs/iam-and-wlcg.md §3.3: always send it; for IDTOKENs, the
// condor:/… list.
import { describe, expect, it } from 'vitest'
import { AP1, IDTOKEN_TYPE, JWT_TYPE, payloadOf, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

async function exchange(extra: Record<string, string>): Promise<{ scope: string; claims: Record<string, unknown> }> {
  const res = await t.post(t.form(await t.userToken(), extra))
  expect(res.status).toBe(200)
  const body = await res.json() as { scope?: unknown; access_token: string }
  expect(typeof body.scope).toBe('string')
  return { scope: body.scope as string, claims: payloadOf(body.access_token) }
}

describe('RFC 8693 §2.2.1 scope', () => {
  it('states the granted scope when the client asked for none (it differs from the empty request)', async () => {
    const r = await exchange({ requested_token_type: JWT_TYPE, audience: AP1 })
    expect(r.scope).toBe('compute.read compute.create')
    expect(r.claims.scope).toBe(r.scope)
  })

  it('states the scope even when identical to a narrower request', async () => {
    const r = await exchange({ requested_token_type: JWT_TYPE, audience: AP1, scope: 'compute.read' })
    expect(r.scope).toBe('compute.read')
    expect(r.claims.scope).toBe('compute.read')
  })

  it('states the condor:/ authorizations of an IDTOKEN', async () => {
    const r = await exchange({ requested_token_type: IDTOKEN_TYPE })
    expect(r.scope).toBe('condor:/READ condor:/WRITE')
    expect(r.claims.scope).toBe(r.scope)
  })
})
