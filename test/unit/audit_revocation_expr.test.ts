import { describe, expect, it } from 'vitest'
import { buildRevocationExpression, condorConfigSnippet } from '../../src/revocation/condor_expression.ts'
import type { Revocation } from '../../src/revocation/revocation.ts'
import { RevocationSnapshot } from '../../src/revocation/revocation_checker.ts'

const NOW = 1_800_000_000
let id = 0
const rev = (kind: Revocation['kind'], value: string, over: Partial<Revocation> = {}): Revocation =>
  ({ id: ++id, kind, value, revokedAt: NOW - 100, until: NOW + 3600, ...over })

describe('buildRevocationExpression', () => {
  it('is the literal false when nothing is revoked, so no token is locked out', () => {
    expect(buildRevocationExpression([], NOW)).toEqual({ expr: 'false', clauses: 0, unexpressed: 0 })
  })

  it('renders one clause per role, site, sub and jti, in a stable order', () => {
    const { expr, clauses } = buildRevocationExpression([
      rev('jti', 'b1'), rev('sub', 'pilot-x@pilots.td', { revokedAt: NOW - 5 }), rev('role', 'pilot', { gen: 4 }),
      rev('site', 'SITE_A', { revokedAt: NOW - 7 }), rev('jti', 'a0'),
    ], NOW)
    expect(expr).toBe('(ctb_role =?= "pilot" && ctb_gen < 4) || (ctb_site =?= "SITE_A" && iat <= 1799999993) || '
      + '(sub =?= "pilot-x@pilots.td" && iat <= 1799999995) || jti =?= "a0" || jti =?= "b1"')
    expect(clauses).toBe(5)
  })

  it('drops entries that can no longer match a valid token', () => {
    expect(buildRevocationExpression([rev('jti', 'old', { until: NOW - 1 }), rev('role', 'r', { gen: 2, until: NOW - 1 })], NOW).expr).toBe('false')
  })

  it('stays one comparison per role after thousands of role revocations, and one clause per sub', () => {
    const many: Revocation[] = []
    for (let i = 0; i < 3000; i++) many.push(rev('role', i % 2 ? 'pilot' : 'startd', { gen: i + 2 }))
    for (let i = 0; i < 3000; i++) many.push(rev('sub', 'pilot-x@pilots.td', { revokedAt: NOW - 3000 + i }))
    const { expr, clauses } = buildRevocationExpression(many, NOW)
    expect(clauses).toBe(3)
    expect(expr.length).toBeLessThan(200)
    expect(expr).toContain('(ctb_role =?= "pilot" && ctb_gen < 3001)')
    expect(expr).toContain(`iat <= ${NOW - 1}`)
  })

  it('leaves out, and counts, stored values that would break out of a ClassAd string or be expanded by the config reader', () => {
    // Refused at revoke time; an entry stored before a character was refused must not stop every other
    // revocation from reaching the daemons. HTCondor's config reader substitutes $(NAME) and $ENV(...)
    // in the value before the ClassAd is parsed.
    const { expr, clauses, unexpressed } = buildRevocationExpression([
      rev('sub', 'x" || true || "'), rev('sub', 'pilot-$(FULL_HOSTNAME)@pilots.td'), rev('jti', 'a0'),
      rev('pilot-job', 'SITE_$(X):42'), rev('sub', 'ok@pilots.td', { iss: 'https://iam$(X).example/' }),
    ], NOW)
    expect(expr).toBe('jti =?= "a0"')
    expect(clauses).toBe(1)
    expect(unexpressed).toBe(4)
    expect(buildRevocationExpression([rev('jti', 'a0')], NOW).unexpressed).toBe(0)
  })

  it('leaves out, and counts, a stored pilot entry whose value is not of its kind\'s shape, instead of failing the whole expression', () => {
    // Refused at revoke time; a row edited by hand (reported by the consistency check) must not keep every
    // other revocation from the daemons: `revoke condor` and GET /v1/revocations/condor failed outright.
    const { expr, clauses, unexpressed } = buildRevocationExpression([
      rev('pilot-enrolment', 'NOT-A-JTI'), rev('pilot-enrolment', '0123456789ABCDEF0123456789ABCDEF'), rev('pilot-job', 'no-colon'), rev('jti', 'a0'),
    ], NOW)
    expect(expr).toBe('jti =?= "a0"')
    expect(clauses).toBe(1)
    expect(unexpressed).toBe(3)
  })

  it('says in the config snippet how many entries it could not express', () => {
    const s = condorConfigSnippet('jti =?= "a0"', 1, NOW, 2)
    expect(s).toMatch(/^# 2 active revocations could not be expressed/m)
    expect(condorConfigSnippet('false', 0, NOW)).not.toContain('could not be expressed')
  })

  it('renders a config snippet with the knob on one line', () => {
    const s = condorConfigSnippet('false', 0, NOW)
    expect(s.split('\n').filter((l) => l.startsWith('SEC_TOKEN_REVOCATION_EXPR'))).toEqual(['SEC_TOKEN_REVOCATION_EXPR = false'])
    expect(s.endsWith('\n')).toBe(true)
  })
})

// A minimal evaluator for the ClassAd subset the generator emits, with ClassAd's three-valued logic
// (HTCondor manual, "ClassAd Evaluation Semantics"): =?= is never UNDEFINED; < on UNDEFINED is UNDEFINED;
// FALSE && x is FALSE; TRUE || x is TRUE. HTCondor revokes unless the result is exactly false (§2.4).
type V = boolean | number | string | undefined
function evalExpr(expr: string, ad: Record<string, unknown>): V {
  const toks = expr.match(/=\?=|&&|\|\||<=|<|\(|\)|"[^"]*"|[A-Za-z_][A-Za-z0-9_]*|\d+/g)!
  let i = 0
  const primary = (): V => {
    const t = toks[i++]!
    if (t === '(') { const v = or(); i++; return v }
    if (t.startsWith('"')) return t.slice(1, -1)
    if (/^\d+$/.test(t)) return Number(t)
    if (t === 'false') return false
    if (t === 'true') return true
    const v = ad[t]
    return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? v : undefined
  }
  const cmp = (): V => {
    const l = primary()
    const op = toks[i]
    if (op !== '=?=' && op !== '<' && op !== '<=') return l
    i++
    const r = primary()
    if (op === '=?=') return typeof l === typeof r && l === r
    if (l === undefined || r === undefined) return undefined
    return op === '<' ? (l as number) < (r as number) : (l as number) <= (r as number)
  }
  const and = (): V => {
    let l = cmp()
    while (toks[i] === '&&') {
      i++
      const r = cmp()
      l = l === false ? false : l === true ? r : r === false ? false : undefined
    }
    return l
  }
  const or = (): V => {
    let l = and()
    while (toks[i] === '||') {
      i++
      const r = and()
      l = l === true ? true : l === false ? r : r === true ? true : undefined
    }
    return l
  }
  return or()
}

describe('RevocationSnapshot agrees with the generated expression', () => {
  const revs = [
    rev('role', 'pilot', { gen: 3 }), rev('site', 'SITE_A', { revokedAt: NOW - 50 }),
    rev('sub', 'bad@pilots.td', { revokedAt: NOW - 50 }), rev('jti', 'j-revoked'), rev('jti', 'j-expired', { until: NOW - 1 }),
  ]
  const { expr } = buildRevocationExpression(revs, NOW)
  const snap = new RevocationSnapshot(revs, new Map([['pilot', 3]]), NOW)
  const base = { iss: 'pool.td', iat: NOW - 10, exp: NOW + 100, scope: 'condor:/READ' }
  it.each([
    ['our pilot token of the revoked generation', { ...base, sub: 'p@pilots.td', jti: 'x1', ctb_role: 'pilot', ctb_gen: 2 }, true],
    ['our pilot token of the current generation', { ...base, sub: 'p@pilots.td', jti: 'x2', ctb_role: 'pilot', ctb_gen: 3 }, false],
    ['another role at generation 1', { ...base, sub: 'p@pilots.td', jti: 'x3', ctb_role: 'schedd', ctb_gen: 1 }, false],
    ['a site token issued before the cut-off', { ...base, iat: NOW - 60, sub: 'p@pilots.td', jti: 'x4', ctb_role: 'startd', ctb_gen: 1, ctb_site: 'SITE_A' }, true],
    ['a site token issued after the cut-off', { ...base, iat: NOW - 40, sub: 'p@pilots.td', jti: 'x5', ctb_role: 'startd', ctb_gen: 1, ctb_site: 'SITE_A' }, false],
    ['a sub revoked before issue', { ...base, iat: NOW - 60, sub: 'bad@pilots.td', jti: 'x6' }, true],
    ['the same sub re-issued afterwards', { ...base, iat: NOW - 10, sub: 'bad@pilots.td', jti: 'x7' }, false],
    ['a revoked jti', { ...base, sub: 'q@td', jti: 'j-revoked' }, true],
    ['a jti whose revocation expired', { ...base, sub: 'q@td', jti: 'j-expired' }, false],
    ['a condor_token_create token (no ctb_* claims)', { iss: 'pool.td', sub: 'condor@pool.td', iat: NOW - 5, jti: 'ffff' }, false],
    ['an HTCondor auto-token with no iat', { iss: 'pool.td', sub: 'condor@password', jti: 'eeee' }, false],
  ])('%s', (_name, claims, revoked) => {
    const result = evalExpr(expr, claims)
    expect(result !== false).toBe(revoked)
    expect(snap.isRevoked(claims)).toBe(revoked)
  })
})

describe('RevocationSnapshot: which revocations block new issuance', () => {
  const snap = new RevocationSnapshot([
    rev('sub', 'iam-user-1'), rev('client', 'ctb-cloud-a-provisioner'), rev('sub', 'pilot-hpc-b-7@pilots.td'),
    rev('role', 'startd', { gen: 3 }), rev('site', 'cloud-a'), rev('jti', 'j1'),
    rev('sub', 'expired-user', { until: NOW - 1 }), rev('client', 'expired-client', { until: NOW - 1 }),
  ], new Map([['startd', 3]]), NOW)

  it.each([
    [{ sub: 'iam-user-1' }, 'this caller has been revoked'],
    [{ sub: 'someone', client_id: 'ctb-cloud-a-provisioner' }, 'client ctb-cloud-a-provisioner has been revoked'],
    [{ sub: 'someone', client_id: 'ctb-cloud-a-ap' }, undefined],
    [{ sub: 'expired-user', client_id: 'expired-client' }, undefined],
  ])('caller %j → %s', (caller, expected) => {
    expect(snap.blockedCaller(caller)).toBe(expected)
  })

  it('blocks a revoked identity, not identities of a revoked role or site (those get a new generation or a later iat)', () => {
    expect(snap.blockedIdentity('pilot-hpc-b-7@pilots.td')).toBe('identity pilot-hpc-b-7@pilots.td has been revoked')
    expect(snap.blockedIdentity('startd-ep-1@eps.td')).toBeUndefined()
    expect(snap.isRevoked({ sub: 'startd-ep-1@eps.td', iat: NOW, ctb_role: 'startd', ctb_gen: 3, ctb_site: 'cloud-a' })).toBe(false)
  })

  it('puts no clause for a client revocation in the HTCondor expression: our tokens carry no client_id', () => {
    expect(buildRevocationExpression([rev('client', 'ctb-monitoring')], NOW)).toEqual({ expr: 'false', clauses: 0, unexpressed: 0 })
  })
})

describe('issuer-bound caller revocations', () => {
  const IAM_A = 'https://iam-a.example.org/'
  const IAM_B = 'https://iam-b.example.org/'

  it('block that sub or client at that issuer only, and never the broker identity of the same name', () => {
    const snap = new RevocationSnapshot([rev('sub', 'alice', { iss: IAM_A }), rev('client', 'factory', { iss: IAM_A })], new Map(), NOW)
    expect(snap.blockedCaller({ iss: IAM_A, sub: 'alice' })).toBe('this caller has been revoked')
    expect(snap.blockedCaller({ iss: IAM_B, sub: 'alice' })).toBeUndefined()
    expect(snap.blockedCaller({ iss: IAM_A, sub: 'bob', client_id: 'factory' })).toBe('client factory has been revoked')
    expect(snap.blockedCaller({ iss: IAM_B, sub: 'bob', client_id: 'factory' })).toBeUndefined()
    expect(snap.blockedIdentity('alice')).toBeUndefined()
    expect(snap.isRevoked({ iss: IAM_A, sub: 'alice', iat: NOW - 200 })).toBe(true)
    expect(snap.isRevoked({ iss: 'https://broker.example.org', sub: 'alice', iat: NOW - 200 })).toBe(false)
  })

  it('without an issuer still match at every issuer and the identity', () => {
    const snap = new RevocationSnapshot([rev('sub', 'alice')], new Map(), NOW)
    expect(snap.blockedCaller({ iss: IAM_B, sub: 'alice' })).toBe('this caller has been revoked')
    expect(snap.blockedIdentity('alice')).toBe('identity alice has been revoked')
  })

  it('render a clause that also names the issuer', () => {
    expect(buildRevocationExpression([rev('sub', 'alice', { iss: IAM_A, revokedAt: NOW - 9 }), rev('client', 'factory', { iss: IAM_A })], NOW).expr)
      .toBe(`(sub =?= "alice" && iss =?= "${IAM_A}" && iat <= ${NOW - 9})`)
  })
})
