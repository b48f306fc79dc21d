import { describe, expect, it } from 'vitest'
import { toErrorDescription } from '../../src/http/oauth_error_response.ts'
import { quote } from '../../src/lib/quote.ts'
import { AP1, IDTOKEN_TYPE, JWT_TYPE, useTokenApp } from '../conformance/support/token_app.ts'

/** RFC 6749 §5.2: error_description MUST NOT include characters outside %x20-21 / %x23-5B / %x5D-7E. */
const ALLOWED = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/

/** Hand-picked hostile fragments: quotes, escapes, controls, line breaks, case-folding letters, surrogates. */
const NASTY = ['"', '\\', "'", '\\"', '\u0000', '\r\n', '\t', '\u007f', '\u0085', '\u2028', '\u2026', 'ſ', 'ı', '\u212A', 'é', '\u{1F600}', '\ud800', '%22', '&quot;', '</script>']

/** Deterministic pseudo-random strings built from NASTY and ASCII: property-style, but reproducible. */
function samples(n: number, seed = 7): string[] {
  let x = seed
  const next = () => { x = (x * 1103515245 + 12345) % 2 ** 31; return x }
  const out: string[] = [...NASTY]
  for (let i = 0; i < n; i++) {
    let s = ''
    const parts = 1 + (next() % 6)
    for (let p = 0; p < parts; p++) s += next() % 2 ? NASTY[next() % NASTY.length]! : String.fromCharCode(0x20 + (next() % 95)).repeat(1 + (next() % 3))
    // Now and then long enough to be shortened.
    out.push(next() % 5 === 0 ? s.repeat(40) : s)
  }
  return out
}

const t = await useTokenApp()

describe('error_description stays within RFC 6749 §5.2 for any caller input', () => {
  it('quote() never lets a quote, backslash or non-ASCII character through, and keeps one line', () => {
    for (const s of samples(500)) {
      const q = quote(s)
      expect(q).toMatch(/^'[\x20-\x21\x23-\x26\x28-\x5b\x5d-\x7e]*(\.\.\.)?'$/)
      expect(q.length).toBeLessThanOrEqual(85)
    }
  })

  it('the edge mapping leaves nothing outside the set', () => {
    for (const s of samples(500)) expect(toErrorDescription(`x ${s} y`)).toMatch(ALLOWED)
  })

  it('POST /token refusals carry only allowed characters, whatever the parameter', async () => {
    const token = await t.userToken()
    const seen = new Set<string>()
    for (const bad of samples(40)) {
      const asks: Record<string, string>[] = [
        { requested_token_type: JWT_TYPE, audience: `condor://${bad}` },
        { requested_token_type: JWT_TYPE, audience: AP1, scope: `compute.read ${bad}` },
        { requested_token_type: IDTOKEN_TYPE, scope: bad },
        { role: bad },
        { host: bad },
        { lifetime: bad },
        { requested_token_type: bad },
        { resource: `https://x.example/${bad}` },
      ]
      for (const extra of asks) {
        const res = await t.post(t.form(token, extra))
        // A sample of plain ASCII may be a valid request; only refusals are under test.
        if (res.status === 200) continue
        const body = await res.json() as { error: string; error_description?: string }
        expect(body.error_description ?? '', JSON.stringify(extra)).toMatch(ALLOWED)
        seen.add(body.error)
      }
    }
    // The samples reach several refusal paths, not one parser error.
    expect(seen.size).toBeGreaterThanOrEqual(3)
  })

  it('refuses a level spelled with a long s at the token endpoint', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: IDTOKEN_TYPE, scope: 'condor:/WRI\u017fTE ADVERTI\u017fE_STARTD' }))
    expect(res.status).toBe(400)
    expect((await res.json() as { error: string }).error).toBe('invalid_request')
  })
})
