import { chmodSync, writeFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { MAX_STORER_ANSWER_BYTES, registerCredential, RegistrationRefused } from '../../src/clients/credential_storer/register_credential.ts'
import { answeringHttps, endlessAnswer } from '../support/answering_https.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// What the storer makes of answers the broker (or whatever answers at its URL) might send. The storer runs in
// the submitting user's terminal (condor_submit), so whatever it prints from an answer reaches that terminal.
const closers: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of closers.splice(0)) await c() })

async function broker(answer: (res: ServerResponse) => void) {
  const b = await answeringHttps(answer)
  closers.push(b.close)
  return b
}

const REQUEST = { provider: 'cms', mode: 'broker' } as const
const refusal = (b: { url: string; caFile: string }) => registerCredential(b.url, 'iam-token', REQUEST, { caFile: b.caFile }).then(() => undefined, (e: unknown) => e)

describe('the credential storer reads the broker\'s answer', () => {
  it('reports an OAuth error answer as error and description', async () => {
    const b = await broker((res) => res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'access_denied', error_description: 'no rule allows cms' })))
    const err = await refusal(b)
    expect(err).toBeInstanceOf(RegistrationRefused)
    expect(err).toMatchObject({ status: 403, error: 'access_denied', message: 'the broker refused the registration (403 access_denied: no rule allows cms)' })
  })

  // A terminal escape sequence in a description would reach the user's terminal: ESC ] 0 ; sets its title,
  // ESC [ 2 J clears it; others rewrite what was printed before.
  it('shows control characters of a description as escapes, never as themselves', async () => {
    const b = await broker((res) => res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_request', error_description: 'bad\x1b]0;owned\x07\x1b[2J\nline' })))
    const err = await refusal(b) as Error
    expect(err.message).toBe('the broker refused the registration (400 invalid_request: bad\\x1b]0;owned\\x07\\x1b[2J\\x0aline)')
    expect(err.message).not.toMatch(/[\x00-\x1f\x7f]/)
  })

  it('does not take an error code outside RFC 6749\'s characters as the broker\'s', async () => {
    const b = await broker((res) => res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'x\x1b[2J' })))
    expect(await refusal(b)).toMatchObject({ status: 403, error: 'unexpected_response', message: 'the broker refused the registration (403 unexpected_response)' })
  })

  it(`stops reading an answer past ${MAX_STORER_ANSWER_BYTES} bytes and says so`, async () => {
    expect(MAX_STORER_ANSWER_BYTES).toBe(64 * 1024)
    // 64 MiB, streamed as fast as the client reads; a bounded client stops long before.
    const b = await broker(endlessAnswer(201, 64 * 1024 * 1024))
    const err = await refusal(b) as Error
    expect(err.message).toBe(`the broker's answer is larger than ${MAX_STORER_ANSWER_BYTES} bytes (HTTP 201)`)
    expect(b.sent()).toBeLessThan(32 * 1024 * 1024)
  })

  // -v says for whom the credential was stored, with the user name the broker's answer gives.
  it('says for whom it stored (-v) with the control characters of the broker\'s user name as escapes', async () => {
    const b = await broker((res) => res.writeHead(201, { 'content-type': 'application/json' })
      .end(JSON.stringify({ user: 'alice\x1b]0;owned\x07', provider: 'cms', top: { broker_url: 'https://b', user: 'alice', provider: 'cms' } })))
    const bin = tempDir('ctb-storecred-')
    writeFileSync(join(bin, 'condor_store_cred'), '#!/bin/sh\nif [ "$1" = query-oauth ]; then exit 1; fi\ncat >/dev/null\n')
    chmodSync(join(bin, 'condor_store_cred'), 0o755)
    const r = await cli(['credential-storer', '-v', '--broker', b.url, '--ca-file', b.caFile, 'cms'], { PATH: `${bin}:/usr/bin:/bin`, BEARER_TOKEN: 'eyJ.a.b' })
    expect(r.code).toBe(0)
    expect(r.err).toContain('stored cms for alice\\x1b]0;owned\\x07')
    expect(r.err).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f]/)
  })
})

describe('the credential storer\'s time budget', () => {
  // condor_submit waits for the storer. undici's body timeout is the longest pause between two chunks, not the
  // whole read: an answer of one byte every 100 ms never trips a 1 s one, and at 64 KiB takes almost two hours.
  it('gives up on an answer still trickling in when its budget (here 1 s) is spent', async () => {
    const b = await broker((res) => {
      res.writeHead(201, { 'content-type': 'application/json' })
      const timer = setInterval(() => res.write(' '), 100)
      res.on('close', () => clearInterval(timer))
    })
    const started = Date.now()
    const err = await registerCredential(b.url, 'iam-token', REQUEST, { caFile: b.caFile, timeoutMs: 1000 }).then(() => undefined, (e: unknown) => e) as Error
    expect(Date.now() - started).toBeLessThan(4000)
    expect(err).toBeInstanceOf(Error)
    expect(err.message).toContain('no complete answer within 1000 ms')
  }, 15_000)
})
