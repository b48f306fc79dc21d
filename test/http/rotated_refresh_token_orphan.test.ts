import { beforeEach, describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * A refresh that IAM answers with a rotated refresh token while the credential is registered afresh or
 * revoked: the rotated token's write loses (the row wins, docs/job-credentials.md), and nothing holds
 * it. IAM retired the old token when it issued this one, so the revocation of the old one (by the
 * re-registration or the admin) does not reach it. Expected: it is revoked at IAM too (RFC 7009), and
 * the only refresh token of the credential live at IAM is the one its row holds.
 */
const t = await useCredentialsApp()

beforeEach(() => {
  t.iam.tokenRequests = []
  t.iam.rotateRefreshTokens = true
})

async function register(user: string): Promise<void> {
  expect((await t.register(await t.userToken({ preferred_username: user, sub: `${user}-sub` }), { provider: 'cms' })).status).toBe(201)
}

/** Bounded poll. */
async function until(check: () => boolean): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (check()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return false
}

describe('a rotated refresh token whose write lost to the row', () => {
  it('is revoked at IAM when the credential was registered afresh meanwhile', async () => {
    await register('ivy')
    const before = new Set(t.iam.liveRefreshTokens)
    const added = () => t.iam.liveRefreshTokens.filter((x) => !before.has(x))
    const res = await t.whileRotationWaits('ivy', () => t.jobToken('ivy', 'cms', t.creddToken(), '?minimum_seconds=999999'), async () => {
      await register('ivy')
    })
    expect(res.status).toBe(503)
    // Left live: the new registration's token only, not the one IAM rotated for the refresh.
    expect(await until(() => added().length === 1)).toBe(true)
    const [registered] = added()
    expect((await t.jobToken('ivy', 'cms', t.creddToken(), '?minimum_seconds=999999')).status).toBe(200)
    expect(t.iamRequests('refresh_token').at(-1)!.get('refresh_token')).toBe(registered)
  })

  it('is revoked at IAM when an admin revoked the credential meanwhile', async () => {
    await register('jon')
    const before = new Set(t.iam.liveRefreshTokens)
    const added = () => t.iam.liveRefreshTokens.filter((x) => !before.has(x))
    const res = await t.whileRotationWaits('jon', () => t.jobToken('jon', 'cms', t.creddToken(), '?minimum_seconds=999999'), async () => {
      const del = await t.app.request('/v1/credentials/jon/cms', { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })
      expect(del.status).toBe(200)
    })
    expect(res.status).toBe(403)
    expect(await until(() => added().length === 0)).toBe(true)
    // And it stays so: nothing of jon's is live at IAM.
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(added()).toEqual([])
  })
})
