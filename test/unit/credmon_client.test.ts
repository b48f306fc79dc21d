import { describe, expect, it } from 'vitest'
import { brokerClient, type Fetch } from '../../src/clients/credmon/client.ts'

const BROKER = 'https://broker.example.org:8443'

function clientAnswering(status: number, body: unknown, headers: Record<string, string> = {}) {
  const seen: Array<{ url: string; init: RequestInit }> = []
  const fetch: Fetch = async (url, init) => {
    seen.push({ url, init })
    return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } })
  }
  return { client: brokerClient({ brokerUrl: `${BROKER}/`, credential: () => 'credd-token\n', fetch }), seen }
}

describe('credmon broker client (the job-token read of the wire contract)', () => {
  it('asks GET /v1/credentials/{user}/{provider}/token with the credd token and the query', async () => {
    const { client, seen } = clientAnswering(200, { access_token: 'eyJ.a.b', token_type: 'Bearer', expires_in: 1200, scope: 'storage.read:/x' })
    const r = await client.fetchJobToken('alice', 'scitokens', { minimum_seconds: 600, scopes: 'storage.read:/x storage.create:/x', audience: 'https://xrd' })
    expect(r).toEqual({ kind: 'token', token: { access_token: 'eyJ.a.b', token_type: 'Bearer', expires_in: 1200, scope: 'storage.read:/x' } })
    const u = new URL(seen[0]!.url)
    expect(`${u.origin}${u.pathname}`).toBe(`${BROKER}/v1/credentials/alice/scitokens/token`)
    expect(Object.fromEntries(u.searchParams)).toEqual({ minimum_seconds: '600', scopes: 'storage.read:/x storage.create:/x', audience: 'https://xrd' })
    expect((seen[0]!.init.headers as Record<string, string>).authorization).toBe('Bearer credd-token')
  })

  it.each([
    [403, { error: 'access_denied', error_description: 'policy' }, {}, { kind: 'refused', reason: 'access_denied: policy' }],
    // The contract's marker of a credential gone for good (docs/job-credentials.md): only the values it defines.
    [403, { error: 'access_denied', error_description: 'revoked', credential: 'revoked' }, {}, { kind: 'refused', reason: 'access_denied: revoked', gone: 'revoked' }],
    [403, { error: 'access_denied', error_description: 'none', credential: 'unknown' }, {}, { kind: 'refused', reason: 'access_denied: none', gone: 'unknown' }],
    [403, { error: 'access_denied', error_description: 'old', credential: 'outdated' }, {}, { kind: 'refused', reason: 'access_denied: old', gone: 'outdated' }],
    [403, { error: 'access_denied', error_description: 'x', credential: 'expired' }, {}, { kind: 'refused', reason: 'access_denied: x' }],
    [403, { error: 'access_denied', error_description: 'x', credential: true }, {}, { kind: 'refused', reason: 'access_denied: x' }],
    [401, { error: 'invalid_token', error_description: 'expired' }, {}, { kind: 'unauthorized', reason: 'invalid_token: expired' }],
    [503, { error: 'temporarily_unavailable' }, { 'retry-after': '120' }, { kind: 'unavailable', reason: 'temporarily_unavailable', retryAfter: 120 }],
    [500, 'oops', {}, { kind: 'unavailable', reason: 'HTTP 500' }],
    // A 403 the broker did not write (a proxy or WAF in front of it, an HTML page, a body cut off): nothing says
    // the credential is refused, and taking it so would remove every user's .use at once. An outage instead.
    [403, '<html>Forbidden</html>', {}, { kind: 'unavailable', reason: 'HTTP 403 without the broker\'s error answer (a proxy in front of it?)' }],
    [403, {}, {}, { kind: 'unavailable', reason: 'HTTP 403 without the broker\'s error answer (a proxy in front of it?)' }],
    [200, { access_token: 'has space', token_type: 'Bearer', expires_in: 10 }, {}, { kind: 'unavailable', reason: 'broker answered 200 without a valid token response' }],
    [200, { access_token: 'eyJ.a.b', token_type: 'Bearer', expires_in: 0 }, {}, { kind: 'unavailable', reason: 'broker answered 200 without a valid token response' }],
  ] as const)('maps HTTP %i to what the credmon does', async (status, body, headers, expected) => {
    const { client } = clientAnswering(status, body, headers)
    expect(await client.fetchJobToken('alice', 'scitokens', {})).toEqual(expected)
  })

  // RFC 9110 §10.2.3: a proxy in front of the broker may send an HTTP-date; one the credmon cannot read is no advice.
  it('reads a Retry-After HTTP-date as the seconds until then, and ignores one that is neither form', async () => {
    const at = new Date(Math.ceil(Date.now() / 1000) * 1000 + 3_600_000).toUTCString()
    const dated = await clientAnswering(503, { error: 'temporarily_unavailable' }, { 'retry-after': at }).client.fetchJobToken('alice', 'scitokens', {})
    expect(dated.kind === 'unavailable' && dated.retryAfter).toBeGreaterThanOrEqual(3599)
    expect(dated.kind === 'unavailable' && dated.retryAfter).toBeLessThanOrEqual(3601)
    // Date.parse reads this as a date in the year 2030; it is neither delay-seconds nor an HTTP-date.
    expect(await clientAnswering(503, { error: 'temporarily_unavailable' }, { 'retry-after': '2030-01-01' }).client.fetchJobToken('alice', 'scitokens', {}))
      .toEqual({ kind: 'unavailable', reason: 'temporarily_unavailable' })
  })

  it('logs a description\'s control characters as escapes, and does not remove a .use on an error code RFC 6749 does not allow', async () => {
    expect(await clientAnswering(403, { error: 'access_denied', error_description: 'no\x1b[2J\nrule' }).client.fetchJobToken('alice', 'scitokens', {}))
      .toEqual({ kind: 'refused', reason: 'access_denied: no\\x1b[2J\\x0arule' })
    expect(await clientAnswering(403, { error: 'access_denied\n' }).client.fetchJobToken('alice', 'scitokens', {}))
      .toEqual({ kind: 'unavailable', reason: 'HTTP 403 without the broker\'s error answer (a proxy in front of it?)' })
  })

  it('treats a network failure as unavailable, and an unreadable token file as its own token refused', async () => {
    const down = brokerClient({ brokerUrl: BROKER, credential: () => 't', fetch: async () => { throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } }) } })
    expect(await down.fetchJobToken('alice', 'scitokens', {})).toEqual({ kind: 'unavailable', reason: 'broker unreachable: ECONNREFUSED' })
    const noToken = brokerClient({ brokerUrl: BROKER, credential: () => { throw new Error('cannot read /etc/condor/tokens.d/credd: ENOENT') }, fetch: async () => { throw new Error('not called') } })
    expect(await noToken.fetchJobToken('alice', 'scitokens', {})).toEqual({ kind: 'unauthorized', reason: "cannot read the credmon's token: cannot read /etc/condor/tokens.d/credd: ENOENT" })
  })

  it('never builds a request for a name that is not a user or credential name', async () => {
    const { client, seen } = clientAnswering(200, {})
    await expect(client.fetchJobToken('../admin', 'scitokens', {})).rejects.toThrow(TypeError)
    // A credential is <provider> or <provider>_<handle>: one handle, no path characters.
    for (const name of ['sci_tok_ens', '../scitokens', 'sci%2ftokens', '_tokens', 'sci_']) {
      await expect(client.fetchJobToken('alice', name, {})).rejects.toThrow(TypeError)
    }
    expect(seen).toEqual([])
  })
})

describe('credmon broker client: answers too large to be a job-token response', () => {
  /** A body of `total` bytes of JSON-ish filler, counting what the client pulled from it. */
  function hugeBody(total: number) {
    let pulled = 0
    const chunk = new Uint8Array(64 * 1024).fill(0x20) // spaces: valid JSON whitespace, so only size can stop it
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled >= total) { controller.close(); return }
        pulled += chunk.length
        controller.enqueue(chunk)
      },
    })
    return { stream, pulled: () => pulled }
  }

  // Only the body is not read past the bound. A 403 whose body cannot be read is not the broker's refusal
  // (that is a short OAuth error answer), so it is an outage like the others: the .use stays.
  it.each([[200, 'unavailable'], [503, 'unavailable'], [403, 'unavailable']] as const)('stops reading a %i body far larger than any answer (%s)', async (status, kind) => {
    // 64 MiB: a broken proxy or broker streaming junk. An access token is at most 16 KiB and a refusal a
    // short description, so 1 MiB read is already far more than any honest answer needs.
    const body = hugeBody(64 * 1024 * 1024)
    const client = brokerClient({
      brokerUrl: BROKER, credential: () => 't',
      fetch: async () => new Response(body.stream, { status, headers: { 'content-type': 'application/json' } }),
    })
    const r = await client.fetchJobToken('alice', 'scitokens', {})
    expect(r).toEqual({ kind, reason: expect.stringContaining('too large') })
    expect(body.pulled()).toBeLessThan(1024 * 1024)
  })
})

describe('credmon broker client: what it logs of a refusal', () => {
  it('cuts a token out of the broker\'s description (a broker that relays IAM\'s "Invalid refresh token: <token>")', async () => {
    const rt = 'DMnt1n7qO2d4WckvbZNuXUZ112RdPKcoRD_OJQEd0Jg'
    const client = brokerClient({
      brokerUrl: BROKER, credential: () => 't',
      fetch: async () => Response.json({ error: 'access_denied', error_description: `IAM refused the grant: Invalid refresh token: ${rt}`, credential: 'revoked' }, { status: 403 }),
    })
    expect(await client.fetchJobToken('alice', 'scitokens', {})).toEqual({ kind: 'refused', gone: 'revoked', reason: 'access_denied: IAM refused the grant: Invalid refresh token: [token]' })
  })
})
