import { afterEach, describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * Scopes are a set (RFC 6749 §3.3), except that IAM keeps the order in which group scopes are asked: the
 * token's wlcg.groups claim lists the groups in the request's order (the WLCG profile's groups: "the result
 * keeps the request order"), and the first group is the one a relying party takes as the job's. So a job
 * token asked for `wlcg.groups:/b wlcg.groups:/a` is asked of IAM in that order, and is not the cached token
 * of `wlcg.groups:/a wlcg.groups:/b`, while the other scopes may still come in any order.
 */
const t = await useCredentialsApp()
const ALL = 'scopes: [compute.read, compute.create, "storage.read:/store/user", "storage.create:/store/user"]'

afterEach(() => t.setPolicy())

async function vaultTop(user: string): Promise<{ vault_token: string; vault_url: string }> {
  const res = await t.register(await t.userToken({ preferred_username: user, 'wlcg.groups': ['/htc/users', '/htc/prod'] }), {
    provider: 'cms', mode: 'vault', scopes: 'compute.read wlcg.groups:/htc/users wlcg.groups:/htc/prod',
  })
  expect(res.status).toBe(201)
  return (await res.json() as { top: { vault_token: string; vault_url: string } }).top
}

async function read(top: { vault_url: string; vault_token: string }, scopes: string) {
  const u = new URL(top.vault_url)
  const res = await t.vault.request(`${u.pathname}?${new URLSearchParams({ minimum_seconds: '60', scopes })}`, { headers: { 'X-Vault-Token': top.vault_token } })
  return { status: res.status, body: await res.json() as { data?: { access_token: string } } }
}

const groupsAsked = (r: URLSearchParams) => r.get('scope')!.split(' ').filter((s) => s.startsWith('wlcg.groups:'))

describe('job tokens: the order of group scopes', () => {
  it('asks IAM for the groups in the order the job asked, one cached token per group order', async () => {
    t.setPolicy((p) => p.replace(ALL, 'scopes: [compute.read, "wlcg.groups:/htc/users", "wlcg.groups:/htc/prod"]'))
    const top = await vaultTop('gisela')
    const before = t.iamRequests('refresh_token').length
    const prodFirst = await read(top, 'wlcg.groups:/htc/prod wlcg.groups:/htc/users compute.read')
    const usersFirst = await read(top, 'compute.read wlcg.groups:/htc/users wlcg.groups:/htc/prod')
    // Other scopes reordered, groups in the same order: the same token, no further refresh.
    const usersFirstAgain = await read(top, 'wlcg.groups:/htc/users compute.read wlcg.groups:/htc/prod')
    expect([prodFirst.status, usersFirst.status, usersFirstAgain.status]).toEqual([200, 200, 200])
    const asked = t.iamRequests('refresh_token').slice(before).map(groupsAsked)
    expect(asked).toEqual([['wlcg.groups:/htc/prod', 'wlcg.groups:/htc/users'], ['wlcg.groups:/htc/users', 'wlcg.groups:/htc/prod']])
    expect(usersFirst.body.data!.access_token).not.toBe(prodFirst.body.data!.access_token)
    expect(usersFirstAgain.body.data!.access_token).toBe(usersFirst.body.data!.access_token)
  })
})
