import { describe, expect, it } from 'vitest'
import { parseAuthzLevel } from '../../src/issuance/authz.ts'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { decide } from '../../src/policy/decide.ts'
import { explain } from '../../src/policy/explain.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { compilePatterns } from '../../src/policy/patterns.ts'
import { htcondorLevelsOfScopes, toAuthzLevel } from '../../src/policy/scopes.ts'

/**
 * Unicode case mapping turns some non-ASCII letters into ASCII ones: 'ſ' (long s) upper-cases to 'S',
 * 'ı' (dotless i) to 'I', and 'K' (Kelvin sign) lower-cases to 'k'. Level names, host names and
 * scope prefixes are ASCII, so a comparison that ignores case must ignore ASCII case only, or a
 * string that no HTCondor daemon would accept passes as a level or a host.
 */
const SPOOFS = ['ADVERTIſE_STARTD', 'condor:/ADVERTIſE_STARTD', 'wrıte', 'condor:/WRıTE', 'ADMINIſTRATOR']

const ISS = 'https://iam.example.org/'
const CTX: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'users.example.org', vars: { IAM_ISSUER: ISS }, scitokenProfile: 'wlcg', maxLifetime: {} }
const policy = loadPolicies('policies', CTX)
const provisioner: VerifiedSubject = { iss: ISS, sub: 'svc-prov', client_id: 'ctb-cloud-a-provisioner', groups: [], scopes: [], exp: 2_000_000_000, claims: {} }
const startd = (over: Record<string, unknown>) => ({ subject: provisioner, role: 'startd', host: 'ep-3.cloud-a.example.org', audience: [], params: {}, ...over })

describe('case-insensitive comparisons are ASCII-only', () => {
  it.each(SPOOFS)('%s is no HTCondor authorization level', (s) => {
    expect(toAuthzLevel(s)).toBeUndefined()
    expect(() => parseAuthzLevel(s)).toThrow(/unknown HTCondor authorization level/)
    expect([...htcondorLevelsOfScopes([s])]).toEqual([])
  })

  it('still folds ASCII case (control)', () => {
    expect(toAuthzLevel('condor:/advertise_startd')).toBe('ADVERTISE_STARTD')
    expect(toAuthzLevel('CONDOR:/Write')).toBe('WRITE')
    expect(parseAuthzLevel('condor:/read')).toBe('READ')
  })

  it('a startd asking for ADVERTIſE_STARTD is refused by decide and by explain alike', () => {
    const req = startd({ scopes: ['ADVERTIſE_STARTD'] })
    const d = decide(policy, req)
    expect(d).toMatchObject({ allow: false, error: 'invalid_scope' })
    expect(explain(policy, req).decision).toMatchObject({ allow: false, error: 'invalid_scope' })
    // Control: the ASCII spelling is granted.
    expect(decide(policy, startd({ scopes: ['ADVERTISE_STARTD'] }))).toMatchObject({ allow: true })
  })

  it('a host with a Kelvin sign is not the host with a k', () => {
    const hosts = compilePatterns(['*.kit.example.org'], { ignoreCase: true })
    expect(hosts.test('ep.KIT.example.org')).toBe(true)
    expect(hosts.test('ep.\u212Ait.example.org')).toBe(false)
    const d = decide(policy, startd({ host: 'ep-3.cloud-a.example.or\u212A' }))
    expect(d).toMatchObject({ allow: false, error: 'invalid_request' })
  })
})
