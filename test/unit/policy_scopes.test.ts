import { describe, expect, it } from 'vitest'
import { parseScope } from '../../src/policy/scopes.ts'

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
