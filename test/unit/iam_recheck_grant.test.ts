import { describe, expect, it } from 'vitest'
import { recheckAudience, recheckScopes, renewedCaller } from '../../src/credentials/iam_recheck_grant.ts'

/**
 * What a scitoken credential's IAM refresh token is asked for (docs/job-credentials.md, "IAM rechecks"):
 * the registering token's group scopes, so IAM's answer carries the same groups (WLCG profile: only
 * requested groups appear, optional ones only when named), and offline_access.
 */
describe('the IAM grant of a scitoken credential', () => {
  it('asks for the group scopes the user\'s token had, optional groups included, and nothing else', () => {
    expect(recheckScopes({ scopes: ['openid', 'compute.read', 'wlcg.groups', 'wlcg.groups:/cms/optional', 'storage.read:/x'], groups: ['/cms', '/cms/optional'] }))
      .toEqual(['wlcg.groups', 'wlcg.groups:/cms/optional', 'offline_access'])
  })
  it('asks for the default groups when the token had groups but named no group scope (IAM profile)', () => {
    expect(recheckScopes({ scopes: [], groups: ['/htc/users'] })).toEqual(['wlcg.groups', 'offline_access'])
  })
  it('asks only for offline_access for a user without groups', () => {
    expect(recheckScopes({ scopes: ['openid'], groups: [] })).toEqual(['offline_access'])
  })
  it('asks for the first audience the broker accepts from the issuer, or none when it checks none', () => {
    expect(recheckAudience(['https://broker.example.org', 'https://other.example.org'])).toEqual(['https://broker.example.org'])
    expect(recheckAudience(undefined)).toEqual([])
    expect(recheckAudience([])).toEqual([])
  })
  it('decides on the caller without the scopes and client IAM\'s recheck answer never restates', () => {
    const registering = {
      iss: 'https://iam.example.org/', sub: 's-1', client_id: 'user-client', groups: ['/cms'], exp: 1, preferred_username: 'ana',
      scopes: ['openid', 'compute.create', 'wlcg.groups', 'wlcg.groups:/cms/optional', 'offline_access'], claims: { preferred_username: 'ana' },
    }
    expect(renewedCaller(registering)).toEqual({
      iss: 'https://iam.example.org/', sub: 's-1', groups: ['/cms'], exp: 1, preferred_username: 'ana',
      scopes: ['wlcg.groups', 'wlcg.groups:/cms/optional'], claims: { preferred_username: 'ana' },
    })
  })
})
