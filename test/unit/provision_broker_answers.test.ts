import { describe, expect, it } from 'vitest'
import { BrokerCallError, BrokerClient, type Fetch } from '../../src/clients/provision/broker_client.ts'

// --broker may name something that is not a condor-token-broker (a web server answering 200 HTML to everything,
// a proxy's error page), or a broker may answer garbage. Each such answer is a BrokerCallError, which the CLI
// prints as one line, not "internal error" (exit 70) from a JSON.parse or a missing field deep in render or plan.
function answering(status: number, text: string): BrokerClient {
  const fetch: Fetch = async () => ({ status, text: async () => text })
  return new BrokerClient({ url: 'https://not-a-broker.example.org', bearer: 'x', fetch })
}

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(BrokerCallError)
  return (err as Error).message
}

describe('broker answers that are not what a condor-token-broker sends', () => {
  it.each([
    ['an HTML page', '<html>hello</html>'],
    ['a JSON array', '[]'],
    ['JSON null', 'null'],
  ])('refuses %s as the metadata, the token endpoint\'s answer and an explanation', async (_, text) => {
    const b = answering(200, text)
    expect(await refusal(b.metadata())).toBe('broker metadata: 200 invalid_response: the answer is not a JSON object; is --broker a condor-token-broker?')
    expect(await refusal(b.daemonToken('startd', 'ep-1.example.org'))).toBe('token for role startd on ep-1.example.org: 200 invalid_response: the answer is not a JSON object; is --broker a condor-token-broker?')
    expect(await refusal(b.explain({ role: 'startd' }))).toBe('policy explain: 200 invalid_response: the answer is not a JSON object; is --broker a condor-token-broker?')
  })

  // The CLI prints a refusal to the operator's terminal: a description (or an error code) carrying an escape
  // sequence must not act on it. RFC 6749 §5.2 allows neither control characters in `error` nor in the description.
  it('shows the control characters of a refusal as escapes, and an error code outside RFC 6749\'s characters as none', async () => {
    const err = await answering(403, JSON.stringify({ error: 'access_denied', error_description: 'no\x1b]0;x\x07rule\n' })).daemonToken('startd', 'ep-1.example.org').then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ error: 'access_denied', description: 'no\\x1b]0;x\\x07rule\\x0a' })
    expect((err as Error).message).toBe('token for role startd on ep-1.example.org: 403 access_denied: no\\x1b]0;x\\x07rule\\x0a')
    expect(await refusal(answering(403, JSON.stringify({ error: 'x\x1b[2J' })).daemonToken('startd', 'ep-1.example.org'))).toBe('token for role startd on ep-1.example.org: 403 error')
    expect(await refusal(answering(403, JSON.stringify({ error: { nested: true } })).daemonToken('startd', 'ep-1.example.org'))).toBe('token for role startd on ep-1.example.org: 403 error')
  })

  it('refuses a token answer whose access_token is not a token with a jti', async () => {
    for (const token of ['garbage', 'a.b.c', `x.${Buffer.from('{"sub":"s"}').toString('base64url')}.y`]) {
      const b = answering(200, JSON.stringify({ access_token: token, expires_in: 10 }))
      expect(await refusal(b.daemonToken('startd', 'ep-1.example.org'))).toBe('token for role startd on ep-1.example.org: 200 invalid_response: access_token is not a token with a jti')
      expect(await refusal(b.pilotEnrolment('pilot', 'hpc', 4, 3600))).toBe('pilot enrolment for site hpc: 200 invalid_response: access_token is not a token with a jti')
    }
  })

  it('refuses metadata without an issuer, a certificate check without an answer and an explanation without a decision', async () => {
    expect(await refusal(answering(200, '{}').metadata())).toBe('broker metadata: 200 invalid_response: no issuer')
    expect(await refusal(answering(200, '{}').checkCertificate({ role: 'startd', dns: ['ep-1.example.org'], ip: [] })))
      .toBe('certificate check for ep-1.example.org: 200 invalid_response: no dry_run answer')
    expect(await refusal(answering(200, '{}').explain({ role: 'startd' }))).toBe('policy explain: 200 invalid_response: no decision')
  })

  it('refuses a pool CA certificate answer that holds no PEM certificate', async () => {
    expect(await refusal(answering(200, '<html>hello</html>').caCertificate())).toBe('pool CA certificate: 200 invalid_response: the answer holds no PEM certificate')
  })
})
