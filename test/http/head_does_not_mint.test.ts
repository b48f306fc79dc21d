import { beforeEach, describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * RFC 9110 §9.3.2: HEAD is GET without the content, and a client (a monitor, a link checker, a proxy
 * probing a URL) sends it expecting no effect (§9.2.1, safe methods). The job-token read and the Vault read
 * are GETs because their credmons say so, but each answer is a token minted or refreshed at IAM and
 * audited as token.issued: answered for HEAD, that token would be made, recorded and thrown away. So both
 * refuse HEAD with 405 and an Allow of GET alone (RFC 9110 §15.5.6), before authenticating, as every other
 * unsupported method is refused.
 */
const t = await useCredentialsApp()

beforeEach(() => { t.iam.tokenRequests = [] })

async function issuedCount(): Promise<number> {
  return (await t.store.query({ limit: 1000, type: 'token.issued' })).records.length
}

describe('HEAD on a GET that mints a token', () => {
  it('HEAD /v1/credentials/{user}/{provider}/token is 405, Allow: GET, and nothing is refreshed or audited', async () => {
    expect((await t.register(await t.userToken({ preferred_username: 'hector' }), { provider: 'cms' })).status).toBe(201)
    const before = await issuedCount()
    const res = await t.app.request('/v1/credentials/hector/cms/token?minimum_seconds=999999', { method: 'HEAD', headers: { authorization: `Bearer ${t.creddToken()}` } })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('GET')
    expect(await res.text()).toBe('')
    expect(t.iamRequests('refresh_token')).toHaveLength(0)
    expect(await issuedCount()).toBe(before)
    // The GET itself still answers (and is what the count above would have seen).
    expect((await t.jobToken('hector', 'cms', t.creddToken(), '?minimum_seconds=999999')).status).toBe(200)
    expect(await issuedCount()).toBe(before + 1)
  })

  it('HEAD on the Vault read is 405, Allow: GET, and mints no SciToken', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'hilda' }), { provider: 'se-storage', mode: 'vault' })
    expect(reg.status).toBe(201)
    const top = (await reg.json() as { top: { vault_token: string; vault_url: string } }).top
    const path = new URL(top.vault_url).pathname
    const before = await issuedCount()
    const res = await t.vault.request(`${path}?minimum_seconds=999999`, { method: 'HEAD', headers: { 'X-Vault-Token': top.vault_token } })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('GET')
    expect(await issuedCount()).toBe(before)
    const get = await t.vault.request(`${path}?minimum_seconds=999999`, { headers: { 'X-Vault-Token': top.vault_token } })
    expect(get.status).toBe(200)
    expect(await issuedCount()).toBe(before + 1)
  })
})
