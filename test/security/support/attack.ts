/**
 * Sending one attack and judging the answer. An attack is refused properly when:
 * - the status is 4xx (never 5xx, never 2xx);
 * - the body is an OAuth error (RFC 6749 §5.2) with a code we emit, an ASCII-safe description, no
 *   access_token, and the response is not cacheable;
 * - no token was minted for it (no token.issued record with its request id), and the refusal is
 *   audited as refusal_audit.ts says for its kind of caller;
 * - neither the body nor anything logged or audited while it ran carries a secret.
 *
 * Each test file keeps a Tally per attack class and prints it; counts of tokens wrongly issued and
 * of 5xx answers must be zero.
 */
import { afterAll, expect, it } from 'vitest'
import type { AuditRecord } from '../../../src/audit/audit_log.ts'
import { rawExchange, rawPost, type RawOutcome } from './raw_http.ts'
import { denialAuditProblem, flushAndCountAnonymousRefusals, type Caller } from './refusal_audit.ts'
import { encodeForm, viaApp, type Reply, type SecurityBroker } from './security_broker.ts'

/** OAuth error codes the token endpoint may answer a refusal with (temporarily_unavailable is a 503). */
export const REFUSAL_CODES = new Set([
  'invalid_request', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type',
  'invalid_scope', 'invalid_target', 'access_denied',
])
/** RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E (no `"`, no `\`, ASCII only). */
export const DESCRIPTION_CHARS = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/

export type Via = 'socket' | 'app'

interface ClassCounts { sent: number; wronglyIssued: number; serverErrors: number; auditedKnown: number; unknownSent: number; auditedUnknown: number }

export class Tally {
  readonly classes = new Map<string, ClassCounts>()
  #n = 0
  /** Unknown-caller refusals counted (to be matched against the aggregate records). */
  unknownRefusals = 0

  nextId(cls: string, via: Via): string {
    return `sec-${cls}-${++this.#n}-${via}`
  }

  of(cls: string): ClassCounts {
    let c = this.classes.get(cls)
    if (!c) this.classes.set(cls, (c = { sent: 0, wronglyIssued: 0, serverErrors: 0, auditedKnown: 0, unknownSent: 0, auditedUnknown: 0 }))
    return c
  }

  table(): Record<string, Record<string, number | string>> {
    const rows: Record<string, Record<string, number | string>> = {}
    for (const [cls, c] of this.classes) {
      rows[cls] = {
        'attacks sent': c.sent,
        'tokens wrongly issued': c.wronglyIssued,
        '5xx': c.serverErrors,
        'audited (known caller, one record)': `${c.auditedKnown}/${c.sent - c.unknownSent}`,
        'unknown caller (aggregated)': `${c.auditedUnknown}/${c.unknownSent}`,
      }
    }
    return rows
  }

  totals(): { wronglyIssued: number; serverErrors: number } {
    let wronglyIssued = 0
    let serverErrors = 0
    for (const c of this.classes.values()) { wronglyIssued += c.wronglyIssued; serverErrors += c.serverErrors }
    return { wronglyIssued, serverErrors }
  }
}

/** Secrets a token contributes: its tail and its signature, when they carry enough entropy to mean anything. */
export function tokenSecrets(token: string): string[] {
  const out: string[] = []
  const tail = token.slice(-24)
  if (tail.length === 24 && new Set(tail).size >= 12) out.push(tail)
  const sig = token.split('.')[2]
  if (sig && sig.length >= 24 && new Set(sig).size >= 12) out.push(sig.slice(0, 24))
  return out
}

export interface TokenAttack {
  cls: string
  caller: Caller
  /** The form, or a raw body (then `headers` should say its type). */
  form?: Record<string, string | string[]>
  body?: string
  headers?: Record<string, string>
  path?: string
  /** Narrower expectations, when the attack has a defined answer. */
  status?: number
  error?: string | string[]
  /** Extra strings that must not come back (e.g. tokens not in the form). */
  secrets?: string[]
}

/** Everything a refused attack must satisfy, given its reply, the logs and audit records it produced. */
export function judgeRefusal(a: TokenAttack, reply: Reply, ctx: { requestId: string; records: AuditRecord[]; logs: string[]; secrets: string[] }): void {
  const where = `${a.cls} ${ctx.requestId}: ${reply.status} ${reply.text.slice(0, 300)}`
  expect(reply.status, where).toBeGreaterThanOrEqual(400)
  expect(reply.status, where).toBeLessThan(500)
  if (a.status !== undefined) expect(reply.status, where).toBe(a.status)
  expect(reply.headers['content-type'], where).toMatch(/^application\/json\b/)
  expect(reply.headers['cache-control'], where).toBe('no-store')
  expect(reply.json, where).toBeDefined()
  const body = reply.json!
  expect(body, where).not.toHaveProperty('access_token')
  expect(typeof body.error, where).toBe('string')
  expect(REFUSAL_CODES.has(body.error as string), `unknown error code in ${where}`).toBe(true)
  if (a.error !== undefined) expect(Array.isArray(a.error) ? a.error : [a.error], where).toContain(body.error)
  for (const k of Object.keys(body)) expect(['error', 'error_description', 'error_uri'], where).toContain(k)
  if (body.error_description !== undefined) {
    expect(typeof body.error_description, where).toBe('string')
    expect(body.error_description as string, where).toMatch(DESCRIPTION_CHARS)
  }
  const audited = JSON.stringify(ctx.records.map((r) => r.event))
  for (const s of ctx.secrets) {
    expect(reply.text.includes(s), `a secret came back in ${where}`).toBe(false)
    expect(ctx.logs.some((l) => l.includes(s)), `a secret was logged during ${ctx.requestId}`).toBe(false)
    expect(audited.includes(s), `a secret was audited during ${ctx.requestId}`).toBe(false)
  }
  const problem = denialAuditProblem(ctx.records, ctx.requestId, a.caller)
  expect(problem, where).toBeNull()
}

/**
 * Sends the attack once through the socket (the fast path `serve` uses) and once through the hono
 * route, tallies both, then judges both. Tallying comes first so the printed counts are complete
 * even when a judgement fails.
 */
export async function sendAttack(sb: SecurityBroker, tally: Tally, a: TokenAttack, vias: Via[] = ['socket', 'app']): Promise<Reply[]> {
  const body = a.body ?? encodeForm(a.form ?? {})
  const headers = a.headers ?? { 'content-type': 'application/x-www-form-urlencoded' }
  const path = a.path ?? '/token'
  const formTokens = [a.form?.subject_token ?? []].flat()
  const secrets = [...sb.secrets(), ...formTokens.flatMap(tokenSecrets), ...(a.secrets ?? []).flatMap(tokenSecrets)]
  const judged: { requestId: string; reply: Reply; logsFrom: number; seq: number }[] = []
  for (const via of vias) {
    // The caller's X-Request-Id is only a label for the logs; the broker's own id (the audit request id)
    // comes back in the response's X-Request-Id.
    const label = tally.nextId(a.cls, via)
    const logsFrom = sb.logs.length
    const seq = await sb.auditHead()
    const reply = via === 'socket'
      ? replyOf(await rawPost(sb.port, path, body, { ...headers, 'x-request-id': label }), label)
      : await viaApp(sb.app, 'POST', path, body, { ...headers, 'x-request-id': label })
    const requestId = reply.headers['x-request-id']
    if (!requestId || requestId === label) throw new Error(`${label}: the reply carries no broker request id (${requestId ?? 'none'})`)
    count(tally, a, reply)
    judged.push({ requestId, reply, logsFrom, seq })
  }
  for (const j of judged) {
    const records = await sb.auditSince(j.seq)
    const known = tally.of(a.cls)
    if (a.caller === 'known' && denialAuditProblem(records, j.requestId, 'known') === null) known.auditedKnown++
    judgeRefusal(a, j.reply, { requestId: j.requestId, records, logs: sb.logs.slice(j.logsFrom), secrets })
  }
  return judged.map((j) => j.reply)
}

function count(tally: Tally, a: TokenAttack, reply: Reply): void {
  const c = tally.of(a.cls)
  c.sent++
  if (a.caller === 'unknown') { c.unknownSent++; tally.unknownRefusals++ }
  if (reply.status >= 500) c.serverErrors++
  if (reply.json && typeof reply.json.access_token === 'string') c.wronglyIssued++
}

/** A socket outcome as a Reply; a closed connection or timeout is a test failure for /token attacks. */
export function replyOf(o: RawOutcome, requestId: string): Reply {
  if (o.kind !== 'reply') throw new Error(`${requestId}: no HTTP response (${o.kind})`)
  return o
}

/**
 * Registers the summary: a last test asserting that no token was wrongly issued, no 5xx answered, and
 * that the unknown callers' refusals are all accounted for by aggregate records; and an afterAll that
 * prints the table per attack class.
 */
export function summarize(title: string, sb: () => SecurityBroker, tally: Tally, startSeq: () => number): void {
  it(`${title}: no token wrongly issued, no 5xx, every unknown caller's refusal counted`, async () => {
    const totals = tally.totals()
    expect(totals.wronglyIssued, 'tokens wrongly issued').toBe(0)
    expect(totals.serverErrors, '5xx answers').toBe(0)
    const counted = await flushAndCountAnonymousRefusals(sb(), startSeq())
    expect(counted, 'refusals of unknown callers accounted for by aggregate audit records').toBeGreaterThanOrEqual(tally.unknownRefusals)
    for (const c of tally.classes.values()) c.auditedUnknown = c.unknownSent
  })
  afterAll(() => {
    console.log(`\nsecurity suite: ${title}`)
    console.table(tally.table())
  })
}

export { rawExchange }
