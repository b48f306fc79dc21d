import { beforeEach, describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * Registration bounds (docs/job-credentials.md): a user holds at most `credentials.max_per_user` live
 * credentials (each handle is one: a row, and a refresh token the broker keeps fresh at IAM). Refusals
 * are OAuth error JSON. Here the bound is 3, set in the config.
 */
const t = await useCredentialsApp({
  configEdit: (yaml) => yaml.replace('  minimum_seconds: 300\n', '  minimum_seconds: 300\n  max_per_user: 3\n'),
})

beforeEach(() => {
  t.iam.tokenRequests = []
})

const exchanges = () => t.iamRequests('urn:ietf:params:oauth:grant-type:token-exchange').length

describe('credentials.max_per_user', () => {
  it('refuses a user a credential beyond the bound with access_denied, before IAM is asked; replacing or revoking frees it', async () => {
    // Each registration by a new IAM subject, so the rate limit is not what refuses.
    const as = async (sub: string) => t.userToken({ preferred_username: 'mia', sub })
    for (const handle of ['a', 'b', 'c']) expect((await t.register(await as(`mia-${handle}`), { provider: 'cms', handle })).status).toBe(201)
    const before = exchanges()
    const refused = await t.register(await as('mia-d'), { provider: 'cms', handle: 'd' })
    expect(refused.status).toBe(403)
    expect(refused.headers.get('cache-control')).toBe('no-store')
    expect(await refused.json()).toEqual({ error: 'access_denied', error_description: expect.stringMatching(/already holds 3 job credentials.*at most 3/) })
    expect(exchanges()).toBe(before)
    expect(await t.store.readCredential('mia', 'cms_d')).toBeUndefined()
    const denied = (await t.store.query({ limit: 5, type: 'token.denied' })).records.map((r) => r.event)
    expect(denied[0]).toMatchObject({ role: 'job-iam', decision: 'deny', reason: expect.stringMatching(/^access_denied: .*at most 3/) })
    // Registering one of the three again replaces it: no new credential.
    expect((await t.register(await as('mia-a2'), { provider: 'cms', handle: 'a' })).status).toBe(201)
    // Another user is not counted with mia.
    expect((await t.register(await t.userToken({ preferred_username: 'noah' }), { provider: 'cms', handle: 'd' })).status).toBe(201)
    // A revoked credential no longer counts.
    const del = await t.app.request('/v1/credentials/mia/cms_b', { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })
    expect(del.status).toBe(200)
    expect((await t.register(await as('mia-d2'), { provider: 'cms', handle: 'd' })).status).toBe(201)
  })
})
