// RFC 6749 §5.2: "invalid_request The request is missing a required parameter, includes an unsupported
// parameter value (other than grant type), repeats a parameter, includes multiple credentials, utilizes
// more than one mechanism for authenticating the client, or is otherwise malformed."
// Bad input: every oversized request gets an OAuth error and no token; never a 500.
// The broker refuses form bodies above 32 KiB (src/http/routes/token.ts) before parsing them.
import { describe, expect, it } from 'vitest'
import { encodeForm, expectOAuthError, TRANSPORT, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
const LIMIT = 32 * 1024

/** A form body of `bytes` bytes that would otherwise be a valid-looking request. */
function formOf(bytes: number): string {
  const head = `${encodeForm(t.form('x'))}&pad=`
  return head + 'a'.repeat(Math.max(0, bytes - head.length))
}

/** A streamed body with no Content-Length (chunked upload) that counts how much the server pulled. */
function countingStream(chunk: number, maxChunks: number): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  let pulled = 0
  let n = 0
  const bytes = new TextEncoder().encode('a'.repeat(chunk))
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (n++ >= maxChunks) { c.close(); return }
      pulled += bytes.length
      c.enqueue(bytes)
    },
  }, { highWaterMark: 0 })
  return { body, pulled: () => pulled }
}

describe('RFC 6749 §5.2 oversized request body → invalid_request', () => {
  it('accepts parsing a body of exactly 32 KiB (the error is about the token, not the size)', async () => {
    const body = await expectOAuthError(await t.request('/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: formOf(LIMIT) }), 400, 'invalid_request')
    expect(body.error_description).not.toMatch(/larger than/)
  })

  it('refuses a body one byte over 32 KiB with invalid_request', async () => {
    const body = await expectOAuthError(await t.request('/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: formOf(LIMIT + 1) }), 400, 'invalid_request')
    expect(body.error_description).toMatch(/larger than 32768 bytes/)
  })

  it('counts bytes, not characters: 20,000 two-byte characters are over the limit', async () => {
    const body = formOf(0) + 'é'.repeat(20_000)
    expect(Buffer.byteLength(body)).toBeGreaterThan(LIMIT)
    expect(body.length).toBeLessThan(LIMIT)
    const res = await t.request('/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body })
    expect((await expectOAuthError(res, 400, 'invalid_request')).error_description).toMatch(/larger than/)
  })

  // In process, `pulled` is what the server read. On a socket the client goes on writing into the kernel's
  // buffers whatever the server does, so what is observable there is that the answer comes before the
  // client has finished sending: the server did not wait for (or buffer) the whole body.
  it('refuses a declared Content-Length over the limit without reading the body', async () => {
    const chunks = TRANSPORT === 'socket' ? 64 * 1024 : 64
    const s = countingStream(1024, chunks)
    const res = await t.request('/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(chunks * 1024) },
      body: s.body,
      duplex: 'half',
    } as RequestInit)
    const pulledAtAnswer = s.pulled()
    await expectOAuthError(res, 400, 'invalid_request')
    if (TRANSPORT === 'socket') expect(pulledAtAnswer).toBeLessThan(chunks * 1024)
    else expect(s.pulled()).toBe(0)
  })

  it('stops reading a chunked body without Content-Length soon after the limit (no unbounded buffering)', async () => {
    // 8 MiB offered (64 MiB on a socket); a bounded reader pulls little more than 32 KiB and answers.
    const chunks = TRANSPORT === 'socket' ? 64 * 1024 : 8 * 1024
    const s = countingStream(1024, chunks)
    const res = await t.request('/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: s.body,
      duplex: 'half',
    } as RequestInit)
    const pulledAtAnswer = s.pulled()
    expect((await expectOAuthError(res, 400, 'invalid_request')).error_description).toMatch(/larger than/)
    if (TRANSPORT === 'socket') expect(pulledAtAnswer).toBeLessThan(chunks * 1024)
    else expect(s.pulled()).toBeLessThanOrEqual(LIMIT + 64 * 1024)
  })
})
