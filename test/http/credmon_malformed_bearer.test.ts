// The credmon's job-token read against the broker's own answer to the header it builds. The broker refuses
// an Authorization header in the Bearer scheme without exactly one token as a malformed request, 400
// invalid_request with a Bearer challenge (RFC 6750 §3.1, docs/errors.md). What is malformed there is the
// credmon's own credential (its token file empty, or holding more than a token on one line), so the
// credmon must report it as it reports its token refused ('unauthorized', an error the operator has to
// fix), not as "broker unavailable" (a warning, retried as if the broker were at fault).
import { describe, expect, it } from 'vitest'
import { brokerClient } from '../../src/clients/credmon/client.ts'
import { fullApp } from '../support/full_app.ts'

const app = fullApp()

describe('the credmon and a credential the broker reads as a malformed bearer header', () => {
  it.each([
    ['an empty token file', ''],
    ['a token file of blanks', ' \n'],
    ['two tokens on one line', 'first-token second-token'],
  ])('%s is the credmon\'s own token refused', async (_how, fileContent) => {
    const client = brokerClient({ brokerUrl: 'https://broker.example.org', credential: () => fileContent, fetch: async (url, init) => await app.request(url, init) })
    const result = await client.fetchJobToken('alice', 'scitokens', {})
    expect(result.kind).toBe('unauthorized')
    expect(result).toMatchObject({ reason: expect.stringMatching(/^invalid_request/) })
  })
})
