// RFC 6749 §5.2: "The authorization server responds with an HTTP 400 (Bad Request) status code (unless
// specified otherwise) and includes the following parameters with the response: [...] The parameters are
// included in the entity-body of the HTTP response using the "application/json" media type".
// docs/iam-and-wlcg.md §3.4 (project decision): upstream IAM failures (timeouts, 5xx) map to 503 with
// {"error":"temporarily_unavailable"}. IAM down gives a clear error, no hang, never a 500.
// Order matters in this file: IAM keys are cached once fetched, so the failures come first.
import { describe, expect, it } from 'vitest'
import type { Fault } from '../../support/iam.ts'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 6749 §5.2 / spec §3.4 IAM unavailable → 503 temporarily_unavailable as OAuth JSON', () => {
  it.each<[string, Fault]>([
    ['unreachable', 'down'],
    ['answering 500 with HTML', 'http500'],
    ['answering truncated JSON', 'badjson'],
  ])('when IAM discovery is %s', async (_name, fault) => {
    t.iam.faults.discovery = fault
    const token = await t.userToken()
    const started = Date.now()
    const body = await expectOAuthError(await t.post(t.form(token)), 503, 'temporarily_unavailable', [token])
    expect(body.error_description).toMatch(/IAM/)
    expect(Date.now() - started).toBeLessThan(5_000)
  })

  it('when discovery works but the JWKS endpoint is down', async () => {
    t.iam.faults.jwks = 'down'
    const body = await expectOAuthError(await t.post(t.form(await t.userToken())), 503, 'temporarily_unavailable')
    expect(body.error_description).toMatch(/IAM/)
  })

  it('issues again once IAM is back (the failures were not cached as refusals)', async () => {
    expect((await t.post(t.form(await t.userToken()))).status).toBe(200)
  })
})
