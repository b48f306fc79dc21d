import { describe, expect, it } from 'vitest'
import { compileAllowedScopes, parseScope, scopeAllowed } from '../../src/policy/scopes.ts'

// A refusal that suggests a fix must suggest one that parses.
describe('parseScope: storage scopes without an absolute path', () => {
  it.each([
    ['storage.read', 'storage.read:/data'],
    ['storage.create', 'storage.create:/data'],
    ['storage.read:data', 'storage.read:/data'],
    ['storage.modify:data/x', 'storage.modify:/data/x'],
    ['storage.read:', 'storage.read:/data'],
    ['storage.read:../x', 'storage.read:/data'],
  ])('%s is refused with the example %s, which itself parses', (scope, example) => {
    const r = parseScope(scope)
    expect(r).toHaveProperty('error')
    const error = (r as { error: string }).error
    expect(error).toContain(`e.g. ${example}`)
    expect(error).not.toMatch(/:[^/\s']*:\//)
    expect(parseScope(example)).toEqual({ kind: 'path', name: scope.split(':')[0], path: example.slice(example.indexOf(':') + 1), text: example })
  })

  it('an unknown storage operation without a path is refused as unknown, not given an example', () => {
    expect(parseScope('storage.delete')).toEqual({ error: `unknown storage scope 'storage.delete'` })
    expect(parseScope('storage.delete:data')).toEqual({ error: `unknown storage scope 'storage.delete'` })
  })
})

// WLCG §2.2: only storage paths are hierarchical (a grant on /a covers /a/b), and SciTokens §2.5 says the
// same of its authz paths. A group scope names one group: IAM answers `wlcg.groups:/cms` with /cms alone,
// so a grant of it must not hand out /cms/admin, nor a capability set's sub-path.
describe('scopeAllowed: which scope paths are hierarchical', () => {
  const allowed = compileAllowedScopes(['storage.read:/store', 'read:/data', 'wlcg.groups:/cms', 'wlcg.capabilityset:/cms'])
  const allows = (s: string) => {
    const p = parseScope(s)
    if ('error' in p) throw new Error(p.error)
    return scopeAllowed(allowed, p)
  }

  it.each(['storage.read:/store/user/x', 'read:/data/sub'])('a grant on a storage or SciTokens path covers %s below it', (s) => {
    expect(allows(s)).toBe(true)
  })

  it.each(['wlcg.groups:/cms', 'wlcg.capabilityset:/cms'])('a group or capability-set grant allows %s itself', (s) => {
    expect(allows(s)).toBe(true)
  })

  it.each(['wlcg.groups:/cms/admin', 'wlcg.groups:/cms/', 'wlcg.capabilityset:/cms/prod'])('a grant of the group /cms does not allow %s', (s) => {
    expect(allows(s)).toBe(false)
  })
})
