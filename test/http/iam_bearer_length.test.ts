// The routes that take the user's IAM access token as a bearer token (POST /v1/certificates, POST
// /v1/credentials) take the same tokens POST /token takes as subject_token: up to MAX_SUBJECT_TOKEN_BYTES
// (16 KiB, the IAM verifier's default max_token_bytes too, docs/iam.md), the verifier deciding beyond
// that. A 12 000-byte IAM token (one carrying many wlcg.groups) is handed to the verifier on both, not
// refused by the header reader as "too long" on one of them.
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { InvalidToken } from '../../src/errors.ts'
import { testDeps } from '../support/broker_deps.ts'

const LONG_IAM_TOKEN = `eyJ${'a'.repeat(11_997)}`

function appSeeing(seen: string[]) {
  const refuse = () => { throw new InvalidToken('refused by the stand-in IAM', { presented: true }) }
  return createApp(testDeps({
    certificates: { service: { admitCaller: async () => {} } as never, verifyCaller: async (bearer: string) => { seen.push(bearer); return refuse() } },
    credentials: {
      service: { register: async (read: () => Promise<{ subjectToken: string }>) => { seen.push((await read()).subjectToken); return refuse() } } as never,
      jobTokens: {} as never, credd: {} as never, close: async () => {}, unstoredRefreshTokens: () => ({ memory: 0, disk: 0 }),
    },
  }))
}

describe('an IAM access token of 12 000 bytes', () => {
  it.each([
    ['POST /v1/certificates', '/v1/certificates', '{"csr":"x","role":"host","dns":["a.example.org"]}'],
    ['POST /v1/credentials', '/v1/credentials', '{"provider":"scitokens"}'],
  ])('%s hands it to the IAM verification', async (_name, url, body) => {
    const seen: string[] = []
    const res = await appSeeing(seen).request(url, { method: 'POST', body, headers: { 'content-type': 'application/json', authorization: `Bearer ${LONG_IAM_TOKEN}` } })
    expect(seen.map((t) => t.length)).toEqual([12_000])
    expect(seen[0] === LONG_IAM_TOKEN).toBe(true)
    expect(res.status).toBe(401)
  })
})
