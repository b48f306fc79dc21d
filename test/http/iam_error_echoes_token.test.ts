import { DatabaseSync } from 'node:sqlite'
import { http, HttpResponse } from 'msw'
import { afterEach, expect, it } from 'vitest'
import { ResponseBodyError } from 'openid-client'
import { mapIamError } from '../../src/iam/iam_errors.ts'
import { createLogger, silentLogger } from '../../src/lib/logger.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * IAM is built on MITREid Connect and Spring Security OAuth, whose token endpoint puts the token it refuses
 * into its answer: `{"error":"invalid_grant","error_description":"Invalid refresh token: <the token>"}`
 * (and "Invalid token: <the token>" for others). The broker relays IAM's description of an invalid_grant
 * to its caller and records it. Neither the refresh token it holds for a user nor the user's own IAM token
 * may travel on that way: not to the credmon's answer (and so every access point's log), nor to the audit
 * record or the broker's log.
 */
const lines: string[] = []
const t = await useCredentialsApp({ log: createLogger((line) => { lines.push(line) }) })

afterEach(() => {
  t.msw.resetHandlers()
})

function auditText(): string {
  const db = new DatabaseSync(t.dbFile, { readOnly: true })
  try {
    return (db.prepare('SELECT body FROM audit_log').all() as { body: string }[]).map((r) => r.body).join('\n')
  } finally {
    db.close()
  }
}

/** The token endpoint answering as Spring Security OAuth does, the presented token in the description. */
function echoingTokenEndpoint(field: 'refresh_token' | 'subject_token', prefix: string) {
  const seen: string[] = []
  t.msw.use(http.post(t.iam.tokenEndpoint, async ({ request }) => {
    const token = new URLSearchParams(await request.text()).get(field) ?? ''
    seen.push(token)
    return HttpResponse.json({ error: 'invalid_grant', error_description: `${prefix}${token}` }, { status: 400 })
  }))
  return seen
}

it('never relays, records or logs the refresh token IAM echoes when it refuses it', async () => {
  const res = await t.register(await t.userToken({ preferred_username: 'ivo', sub: 'ivo-sub' }), { provider: 'cms' })
  expect(res.status).toBe(201)
  const seen = echoingTokenEndpoint('refresh_token', 'Invalid refresh token: ')
  const answer = await t.jobToken('ivo', 'cms', t.creddToken())
  expect(answer.status).toBe(403)
  const body = await answer.text()
  // The refusal itself still comes through: the credential is gone, and IAM's words around the token stay.
  expect(JSON.parse(body)).toMatchObject({ error: 'access_denied', credential: 'revoked' })
  expect(body).toContain('Invalid refresh token')
  expect(seen).toHaveLength(1)
  const rt = seen[0]!
  expect(rt.length).toBeGreaterThan(20)
  for (const text of [body, auditText(), ...lines]) expect(text.includes(rt), `the refresh token in: ${text.slice(0, 300)}`).toBe(false)
})

it('never relays, records or logs the user\'s IAM token when IAM echoes it in refusing the exchange', async () => {
  const userToken = await t.userToken({ preferred_username: 'ines', sub: 'ines-sub' })
  echoingTokenEndpoint('subject_token', 'Invalid token: ')
  const res = await t.register(userToken, { provider: 'cms' })
  expect(res.status).toBe(400)
  const body = await res.text()
  expect(JSON.parse(body)).toMatchObject({ error: 'invalid_grant' })
  expect(body).toContain('Invalid token')
  // The user's access token is live: in the audit store it would be readable by every admin for years.
  for (const text of [body, auditText(), ...lines]) expect(text.includes(userToken.slice(0, 120)), `the user's token in: ${text.slice(0, 300)}`).toBe(false)
})

// What IAM says besides the token stays readable: these descriptions are relayed as they came.
it.each([
  ['User needs to sign the AUP', 'IAM refused the grant: User needs to sign the AUP'],
  ['Invalid scope: storage.read:/store/user/alice/run2024', 'IAM refused the grant: Invalid scope: storage.read:/store/user/alice/run2024'],
  ['Client iam-escape.cloud.cnaf.infn.it is not allowed', 'IAM refused the grant: Client iam-escape.cloud.cnaf.infn.it is not allowed'],
  ['Token 0b9b8e3c-3c4e-4b39-9a1c-2f6c0e1d7a55 was revoked', 'IAM refused the grant: Token 0b9b8e3c-3c4e-4b39-9a1c-2f6c0e1d7a55 was revoked'],
  ['Invalid refresh token: eyJhbGciOiJub25lIn0.eyJqdGkiOiI3YjQ1In0.', 'IAM refused the grant: Invalid refresh token: [token]'],
  ['Invalid refresh token: Kx9vQ2mZ7pL4tR8wN1bY6cH3', 'IAM refused the grant: Invalid refresh token: [token]'],
])('keeps IAM\'s words and cuts out only a token: %s', async (description, relayed) => {
  const err = new ResponseBodyError('server responded with an error in the response body', {
    cause: { error: 'invalid_grant', error_description: description },
    response: new Response(null, { status: 400 }),
  } as never)
  expect(mapIamError(err, 'refresh', t.iam.issuer, silentLogger).description).toBe(relayed)
})
