import { cutTokens } from '../lib/cut_tokens.ts'

/**
 * An OAuth error answer (RFC 6749 §5.2), the shape of every refusal the broker sends, as every client reads
 * it. Only `error` makes an answer one; the description is another system's text and is shown only through
 * oauthErrorLine.
 */
export interface OAuthErrorAnswer {
  error: string
  description?: string
  uri?: string
}

/** RFC 6749 Appendix A.7: error = 1*NQSCHAR, NQSCHAR = %x20-21 / %x23-5B / %x5D-7E. */
const ERROR_CODE = /^[\x20\x21\x23-\x5b\x5d-\x7e]+$/

/**
 * The error answer in a parsed JSON body, or undefined when the body is not one (an HTML page of a proxy, an
 * array, an object without a well-formed `error`). A client that acts on a refusal (the credmon removing a
 * `.use`) acts only on an answer this returns.
 */
export function readOAuthError(body: unknown): OAuthErrorAnswer | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined
  const b = body as Record<string, unknown>
  if (typeof b.error !== 'string' || !ERROR_CODE.test(b.error)) return undefined
  return {
    error: b.error,
    ...(typeof b.error_description === 'string' ? { description: b.error_description } : {}),
    ...(typeof b.error_uri === 'string' ? { uri: b.error_uri } : {}),
  }
}

/** Control characters (C0, DEL, C1), format characters (bidi overrides), line and paragraph separators, lone surrogates. */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\\]/gu

/**
 * Text from elsewhere, made safe to print to a terminal or write to a log line: every character that could
 * move the cursor, start an escape sequence, reorder or break the line is shown as `\xHH` or `\u{H}`, and a
 * backslash as `\\`, so an escape on screen is never one the sender wrote.
 */
export function visibleText(text: string): string {
  return text.replace(INVISIBLE, (c) => {
    if (c === '\\') return '\\\\'
    const cp = c.codePointAt(0)!
    return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`
  })
}

/** The most of a description shown; the broker's own are one sentence. */
export const MAX_DESCRIPTION_CHARS = 200

/**
 * A description made fit to print on one line: cut to MAX_DESCRIPTION_CHARS, anything token-shaped replaced
 * (a broker that predates its own cutting relays IAM's "Invalid refresh token: <token>" as IAM wrote it), and
 * control characters shown as escapes.
 */
export function shownDescription(description: string): string {
  const cut = cutTokens(description)
  if (cut.length <= MAX_DESCRIPTION_CHARS) return visibleText(cut)
  // Not between the two halves of a surrogate pair: half a character would show as an escape nobody sent.
  const end = /[\ud800-\udbff]/.test(cut[MAX_DESCRIPTION_CHARS - 1]!) && /[\udc00-\udfff]/.test(cut[MAX_DESCRIPTION_CHARS]!) ? MAX_DESCRIPTION_CHARS - 1 : MAX_DESCRIPTION_CHARS
  return visibleText(`${cut.slice(0, end)}…`)
}

/** `error: description` on one line (the description as shownDescription makes it), or the error alone. */
export function oauthErrorLine(answer: OAuthErrorAnswer): string {
  return answer.description ? `${answer.error}: ${shownDescription(answer.description)}` : answer.error
}
