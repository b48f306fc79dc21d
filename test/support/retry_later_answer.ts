import { expect } from 'vitest'

/**
 * The answer to a request the broker could not serve for now (an audit store outage): 503 with a
 * Retry-After in delay-seconds (RFC 9110 §10.2.3), OAuth error `temporarily_unavailable` (RFC 6749
 * §4.1.2.1), and nothing of what the request asked for (`withheld`: the token, the certificate).
 */
export async function expectRetryLaterAnswer(res: Response, withheld: string): Promise<void> {
  expect(res.status).toBe(503)
  expect(res.headers.get('retry-after')).toMatch(/^[1-9]\d*$/)
  const body = await res.json() as Record<string, unknown>
  expect(body.error).toBe('temporarily_unavailable')
  expect(body).not.toHaveProperty(withheld)
}
