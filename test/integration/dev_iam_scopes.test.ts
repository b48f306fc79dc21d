// Pure rules of the development IAM (no sockets): IAM scope matching, wlcg.groups resolution and the
// exchange PDP (docs/iam-and-wlcg.md §1.4, §1.5, §2.2). Kept under integration/ beside the dev IAM tests.
import { describe, expect, it } from 'vitest'
import { FEDERATION_ROBOTS, resolveDevIamConfig, subjectForUsername } from '../../src/dev_iam/dev_iam_config.ts'
import { decideExchange } from '../../src/dev_iam/exchange_policy.ts'
import { resolveWlcgGroups, scopeCovers, splitScope } from '../../src/dev_iam/scopes.ts'

describe('scopeCovers (IAM PATH matcher)', () => {
  it.each([
    ['compute.read', 'compute.read', true],
    ['compute.read', 'compute.create', false],
    ['storage.read:/', 'storage.read:/cms/file', true],
    ['storage.read:/cms', 'storage.read:/cms', true],
    ['storage.read:/cms', 'storage.read:/cms/', true],
    ['storage.read:/cms', 'storage.read:/cms/x/y', true],
    ['storage.read:/cms', 'storage.read:/cmsx', false],
    ['storage.read:/cms/', 'storage.read:/cms/x', true],
    ['storage.read:/cms', 'storage.read:/cms/../atlas', false],
    ['storage.read:/cms', 'storage.create:/cms', false],
    ['storage.read:/', 'storage.read:relative', false],
    ['wlcg.groups', 'wlcg.groups:/cms', true],
    ['wlcg.groups:/cms', 'wlcg.groups:/atlas', false],
    ['compute.read', 'compute.read:/x', false],
  ])('%s covers %s: %s', (allowed, requested, expected) => {
    expect(scopeCovers(allowed, requested)).toBe(expected)
  })

  it('splits scope strings, dropping empties and duplicates', () => {
    expect(splitScope(' a  b a ')).toEqual(['a', 'b'])
    expect(splitScope(undefined)).toEqual([])
  })
})

describe('resolveWlcgGroups (WLCG profile §2.2)', () => {
  const groups = ['/cms', '/cms/pilots', '/ctb-admins']
  it.each([
    [['openid'], undefined],
    [['wlcg.groups'], ['/cms', '/cms/pilots', '/ctb-admins']],
    [['wlcg.groups:/ctb-admins'], ['/ctb-admins', '/cms', '/cms/pilots']],
    [['wlcg.groups:/cms/pilots', 'wlcg.groups:/ctb-admins'], ['/cms/pilots', '/ctb-admins', '/cms']],
    [['wlcg.groups:/atlas'], ['/cms', '/cms/pilots', '/ctb-admins']],
  ])('%j → %j', (scopes, expected) => {
    expect(resolveWlcgGroups(scopes, groups)).toEqual(expected)
  })
})

describe('decideExchange (IAM exchange PDP)', () => {
  const P = (rule: 'PERMIT' | 'DENY', origin: string, destination: string, scopes?: string[]) => ({ rule, origin, destination, ...(scopes ? { scopes } : {}) })
  it.each([
    ['no policy', [], 'DENY'],
    ['ANY→ANY permit', [P('PERMIT', '*', '*')], 'PERMIT'],
    ['BY_ID deny outranks ANY permit', [P('PERMIT', '*', '*'), P('DENY', 'cli', 'broker')], 'DENY'],
    ['BY_ID permit outranks ANY deny', [P('DENY', '*', '*'), P('PERMIT', 'cli', 'broker')], 'PERMIT'],
    ['equal rank: DENY wins', [P('PERMIT', '*', 'broker'), P('DENY', 'cli', '*')], 'DENY'],
    ['other destination does not apply', [P('PERMIT', '*', 'other')], 'DENY'],
    ['scope not permitted', [P('PERMIT', '*', 'broker', ['compute.read', 'storage.read:/cms'])], 'INVALID_SCOPE'],
    ['scope permitted by path', [P('PERMIT', '*', 'broker', ['compute.read', 'storage.read:/'])], 'PERMIT'],
  ] as const)('%s → %s', (_name, policies, expected) => {
    expect(decideExchange(policies, 'cli', 'broker', ['compute.read', 'storage.read:/atlas']).decision).toBe(expected)
  })
})

describe('development IAM configuration', () => {
  it('derives stable UUID-shaped subjects per user name', () => {
    expect(subjectForUsername('alice')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(subjectForUsername('alice')).toBe(subjectForUsername('alice'))
    expect(subjectForUsername('alice')).not.toBe(subjectForUsername('bob'))
  })

  it('has the default realm the demo relies on', () => {
    const c = resolveDevIamConfig()
    expect(c.clients.map((x) => x.client_id)).toEqual(['dev-cli', 'broker', 'provisioner', ...FEDERATION_ROBOTS])
    expect(Object.fromEntries(c.users.map((u) => [u.username, u.groups]))).toEqual({
      alice: ['/cms', '/ctb-admins', '/htc/users'], bob: ['/cms/pilots'], carol: [],
    })
  })
})
