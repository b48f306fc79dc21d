import { describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * A role revocation is a reset: every token issued under the role before it is dead, and the holders
 * obtain new ones (docs/audit.md, revocations; docs/job-credentials.md, reuse). A cached kind-iam job token
 * carries no `ctb_gen` of ours, so the broker must remember the generation it obtained the token under:
 * after the provider's role is reset, the credd gets a token obtained afresh, not the one from before.
 */
const t = await useCredentialsApp()

describe('a kind-iam job token cached before its role was reset', () => {
  it('is not handed on after the reset: the next request refreshes at IAM', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'rolf', sub: 'rolf-sub' }), { provider: 'cms' })
    expect(reg.status).toBe(201)
    const first = await t.jobToken('rolf', 'cms', t.creddToken(), '?minimum_seconds=60')
    expect(first.status).toBe(200)
    const before = t.iamRequests('refresh_token').length
    await t.revocations.revoke({ kind: 'role', value: 'job-iam' }, { principal: 'test' })
    const again = await t.jobToken('rolf', 'cms', t.creddToken(), '?minimum_seconds=60')
    expect(again.status).toBe(200)
    expect(t.iamRequests('refresh_token').length - before).toBe(1)
    expect((await again.json() as { access_token: string }).access_token).not.toBe((await first.json() as { access_token: string }).access_token)
  })
})
