/**
 * Property tests (fast-check, bounded runs) over POST /token: random mutations of a request the policy
 * allows, and random byte mutations of a valid IAM token. Properties: never a 5xx; a token only for a
 * request that is exactly an allowed one; errors are OAuth JSON that never echo the subject token.
 * On failure fast-check reports the seed and path; CTB_FC_SEED=<seed> replays a run.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DESCRIPTION_CHARS, REFUSAL_CODES, tokenSecrets } from './support/attack.ts'
import { encodeForm, JWT_TYPE, AT, startSecurityBroker, TE, viaApp, type Reply, type SecurityBroker } from './support/security_broker.ts'
import { rawPost } from './support/raw_http.ts'

let sb: SecurityBroker
let valid: string
beforeAll(async () => {
  sb = await startSecurityBroker()
  valid = await sb.token.provisioner({ exp: Math.floor(Date.now() / 1000) + 3600 })
})
afterAll(async () => { await sb?.close() })

const RUNS = 250
const seed = process.env.CTB_FC_SEED ? Number(process.env.CTB_FC_SEED) : undefined
const EP = 'ep-1.cloud-a.example.org'
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

/** Runs fc.assert and makes sure the seed reaches the test output even if a reporter trims messages. */
async function check<T>(name: string, prop: fc.IAsyncProperty<T>): Promise<void> {
  try {
    await fc.assert(prop, { numRuns: RUNS, ...(seed !== undefined ? { seed } : {}), endOnFailure: false, interruptAfterTimeLimit: 45_000 })
  } catch (err) {
    console.error(`fast-check property "${name}" failed; replay with CTB_FC_SEED=<seed below>\n${(err as Error).message}`)
    throw err
  }
}

function judge(r: Reply, allowed: boolean, secretsOf: string[]): void {
  expect(r.status, r.text).toBeLessThan(500)
  if (typeof r.json?.access_token === 'string') {
    expect(allowed, `token issued for a request that is not an allowed one: ${r.text.slice(0, 80)}`).toBe(true)
    expect(r.status).toBe(200)
    return
  }
  expect(r.status, r.text).toBeGreaterThanOrEqual(400)
  expect(r.headers['cache-control']).toBe('no-store')
  expect(REFUSAL_CODES.has(r.json?.error as string), r.text).toBe(true)
  if (r.json!.error_description !== undefined) expect(r.json!.error_description as string).toMatch(DESCRIPTION_CHARS)
  for (const s of secretsOf) expect(r.text.includes(s), 'the subject token came back').toBe(false)
}

// ---- /token parameters ----

/** Characters that make any value of these parameters invalid, inserted somewhere in the value. */
const POISON = ['@', ',', ' ', '\t', '\r', '\n', '/', '*', '"', '\\', '\u017f', '\u0000', '(', '$', '{', '\u00e9', '\ud83d\ude00', '%']
const poisoned = (base: string) => fc.tuple(fc.constantFrom(...POISON), fc.nat({ max: base.length }), fc.nat({ max: 3 }))
  .map(([p, at, times]) => `${base.slice(0, at)}${p.repeat(times + 1)}${base.slice(at)}`)
const weird = fc.oneof(
  fc.string({ maxLength: 64 }),
  fc.string({ unit: 'grapheme', maxLength: 32 }),
  fc.string({ unit: 'binary', maxLength: 32 }),
  fc.nat({ max: 40_000 }).map((n) => 'x'.repeat(n)),
)

const REQUIRED: Record<string, string> = { grant_type: TE, subject_token: '', subject_token_type: AT, role: 'startd', host: EP }
const OPTIONAL: Record<string, string> = { scope: 'condor:/ADVERTISE_STARTD', lifetime: '3600', requested_token_type: 'urn:htcondor:token-type:idtoken', audience: 'pool.example.org', site: 'cloud-a', slurm_job_id: '1' }
const KNOWN = new Set([...Object.keys(REQUIRED), ...Object.keys(OPTIONAL), 'resource', 'actor_token', 'actor_token_type', 'client_id'])

type Op = { op: 'keep' } | { op: 'drop' } | { op: 'poison'; value: string } | { op: 'repeat' } | { op: 'replace'; value: string }
const requiredOp = (name: string) => fc.oneof(
  { weight: 6, arbitrary: fc.constant<Op>({ op: 'keep' }) },
  { weight: 1, arbitrary: fc.constant<Op>({ op: 'drop' }) },
  { weight: 1, arbitrary: fc.constant<Op>({ op: 'repeat' }) },
  { weight: 2, arbitrary: poisoned(REQUIRED[name] || 'x').map((value): Op => ({ op: 'poison', value })) },
  { weight: 2, arbitrary: weird.map((value): Op => ({ op: 'replace', value })) },
)
const optionalOp = (name: string) => fc.oneof(
  { weight: 4, arbitrary: fc.constant<Op>({ op: 'drop' }) },
  { weight: 2, arbitrary: poisoned(OPTIONAL[name]!).map((value): Op => ({ op: 'poison', value })) },
)
const extras = fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !KNOWN.has(k)), weird, { maxKeys: 3 })
const requestArb = fc.record({
  required: fc.record(Object.fromEntries(Object.keys(REQUIRED).map((k) => [k, requiredOp(k)])) as Record<string, fc.Arbitrary<Op>>),
  optional: fc.record(Object.fromEntries(Object.keys(OPTIONAL).map((k) => [k, optionalOp(k)])) as Record<string, fc.Arbitrary<Op>>),
  extras,
  socket: fc.boolean(),
})

function buildForm(req: { required: Record<string, Op>; optional: Record<string, Op>; extras: Record<string, string> }): { body: string; allowed: boolean } {
  const p = new URLSearchParams()
  let allowed = true
  const base: Record<string, string> = { ...REQUIRED, subject_token: valid }
  for (const [k, op] of Object.entries(req.required)) {
    if (op.op === 'keep') p.append(k, base[k]!)
    else {
      allowed = false
      if (op.op === 'repeat') { p.append(k, base[k]!); p.append(k, base[k]!) }
      if (op.op === 'poison' || op.op === 'replace') p.append(k, op.value)
      // A replacement equal to the base value is the base request after all (vanishingly rare).
      if (op.op === 'replace' && op.value === base[k]) allowed = true
    }
  }
  for (const [k, op] of Object.entries(req.optional)) {
    if (op.op === 'poison') { p.append(k, op.value); allowed = false }
  }
  for (const [k, v] of Object.entries(req.extras)) p.append(k, v)
  return { body: p.toString(), allowed }
}

// ---- token bytes ----

const ALPHABET = fc.oneof(fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ '.split('')), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }))
const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), ch: ALPHABET }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), ch: fc.string({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 200 }) }),
)
type Mutation = typeof mutationArb extends fc.Arbitrary<infer M> ? M : never

function mutate(t: string, ms: Mutation[]): string {
  let s = t
  for (const m of ms) {
    const at = m.at % (s.length + 1)
    switch (m.kind) {
      case 'replace': s = `${s.slice(0, at)}${m.ch}${s.slice(at + 1)}`; break
      case 'delete': s = `${s.slice(0, at)}${s.slice(at + m.len)}`; break
      case 'insert': s = `${s.slice(0, at)}${m.ch}${s.slice(at)}`; break
      case 'truncate': s = s.slice(0, at); break
      case 'duplicate': s = `${s.slice(0, at)}${s.slice(at, at + m.len)}${s.slice(at)}`; break
    }
  }
  return s
}

/**
 * A mutated token that still means the original: same header and payload text, and a signature whose
 * base64url decodes to the same bytes (the last character's unused bits do not count). Anything else
 * must be refused.
 */
function equivalent(mutated: string, original: string): boolean {
  const [a, b] = [mutated.split('.'), original.split('.')]
  if (a.length !== 3 || a[0] !== b[0] || a[1] !== b[1] || !/^[A-Za-z0-9_-]*$/.test(a[2]!)) return false
  return Buffer.from(a[2]!, 'base64url').equals(Buffer.from(b[2]!, 'base64url'))
}

describe('property tests over POST /token', () => {
  it(`mutated /token parameters: no 5xx, a token only for the allowed request (${RUNS} runs)`, async () => {
    await check('parameters', fc.asyncProperty(requestArb, async (req) => {
      const { body, allowed } = buildForm(req)
      const r = req.socket
        ? await rawPost(sb.port, '/token', body, FORM).then((o) => { if (o.kind !== 'reply') throw new Error(`no response (${o.kind})`); return o })
        : await viaApp(sb.app, 'POST', '/token', body, FORM)
      judge(r, allowed, tokenSecrets(valid))
    }))
  }, 90_000)

  it(`mutated subject-token bytes: no 5xx, a token only when the bytes still mean the original (${RUNS} runs)`, async () => {
    await check('token bytes', fc.asyncProperty(fc.array(mutationArb, { minLength: 1, maxLength: 3 }), fc.constantFrom(AT, JWT_TYPE), async (ms, type) => {
      const token = mutate(valid, ms)
      const body = encodeForm({ grant_type: TE, subject_token: token, subject_token_type: type, role: 'startd', host: EP })
      const r = await viaApp(sb.app, 'POST', '/token', body, FORM)
      judge(r, token === valid || equivalent(token, valid), [...tokenSecrets(valid), ...tokenSecrets(token)])
    }))
  }, 90_000)
})
