import { describe, expect, it } from 'vitest'
import { oauthErrorLine, readOAuthError, visibleText } from '../../src/contract/oauth_error.ts'

// RFC 6749 §5.2: an error answer is a JSON object whose `error` is one ASCII error code (Appendix A.7:
// 1*NQSCHAR, NQSCHAR = %x20-21 / %x23-5B / %x5D-7E), with optional `error_description` and `error_uri`.
describe('readOAuthError (RFC 6749 §5.2)', () => {
  it('reads the RFC\'s example and keeps the optional members it finds', () => {
    expect(readOAuthError({ error: 'invalid_request' })).toEqual({ error: 'invalid_request' })
    expect(readOAuthError({ error: 'access_denied', error_description: 'policy', error_uri: 'https://b.example/e', credential: 'revoked' }))
      .toEqual({ error: 'access_denied', description: 'policy', uri: 'https://b.example/e' })
  })

  it.each([
    [undefined], [null], ['access_denied'], [[{ error: 'x' }]], [{}], [{ error: 3 }], [{ error: '' }],
    [{ error: 'a"b' }], [{ error: 'a\\b' }], [{ error: 'a\x1bb' }], [{ error: 'é' }], [{ error_description: 'only' }],
  ])('is undefined for %j, which is not one', (body) => {
    expect(readOAuthError(body)).toBeUndefined()
  })

  it('ignores a description or uri that is not a string', () => {
    expect(readOAuthError({ error: 'server_error', error_description: 5, error_uri: {} })).toEqual({ error: 'server_error' })
  })
})

describe('visibleText: another system\'s text made safe for a terminal or a log', () => {
  it('shows control characters as escapes instead of passing them on', () => {
    expect(visibleText('a\x1b]0;pwned\x07b')).toBe('a\\x1b]0;pwned\\x07b')
    expect(visibleText('line1\nline2\r\t')).toBe('line1\\x0aline2\\x0d\\x09')
    expect(visibleText('c1\u009b31m del\x7f')).toBe('c1\\x9b31m del\\x7f')
    // Bidirectional overrides (Trojan Source) and line separators reorder or break what is shown.
    expect(visibleText('x\u202ey\u2028z')).toBe('x\\u{202e}y\\u{2028}z')
  })

  it('escapes a backslash, so an escape shown is never one the sender typed', () => {
    expect(visibleText('a\\x1b')).toBe('a\\\\x1b')
  })

  it('leaves printable text, non-ASCII letters included, as it is', () => {
    expect(visibleText('refresh token expired: Müller ✓')).toBe('refresh token expired: Müller ✓')
  })
})

describe('oauthErrorLine: one line for a log or a terminal', () => {
  it('is "error: description", or the error alone', () => {
    expect(oauthErrorLine({ error: 'access_denied', description: 'policy' })).toBe('access_denied: policy')
    expect(oauthErrorLine({ error: 'access_denied' })).toBe('access_denied')
  })

  it('escapes control characters, cuts tokens and bounds the description', () => {
    expect(oauthErrorLine({ error: 'invalid_grant', description: 'bad\x1b[2J' })).toBe('invalid_grant: bad\\x1b[2J')
    expect(oauthErrorLine({ error: 'invalid_grant', description: 'Invalid refresh token: eyJhbGciOiJub25lIn0AbCdEf012345' })).toBe('invalid_grant: Invalid refresh token: [token]')
    expect(oauthErrorLine({ error: 'x', description: 'y'.repeat(1000) })).toBe(`x: ${'y'.repeat(200)}…`)
  })

  // U+1F600 is two UTF-16 code units: a cut between them would leave half a character, shown as "\u{d83d}",
  // an escape the sender never wrote. The cut falls before the whole character instead.
  it('never cuts a description inside a character', () => {
    expect(oauthErrorLine({ error: 'x', description: `${'y'.repeat(199)}\u{1f600}tail` })).toBe(`x: ${'y'.repeat(199)}…`)
  })
})
