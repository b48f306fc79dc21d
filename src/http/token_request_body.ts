import type { IncomingMessage } from 'node:http'
import { InvalidRequest } from '../errors.ts'

/** Whole form bodies above this are refused before parsing (a subject token is at most 16 KiB). */
export const MAX_BODY_BYTES = 32 * 1024

export type FormFields = Record<string, string | string[]>

export function bodyTooLarge(): InvalidRequest {
  return new InvalidRequest(`request body larger than ${MAX_BODY_BYTES} bytes`)
}

/** The connection closed before the whole body arrived (nobody is left to read the answer; the refusal is for the record). */
export function bodyCutOff(cause: unknown): InvalidRequest {
  return new InvalidRequest('the connection closed before the request body was complete', { cause })
}

/**
 * RFC 6749 §4.5 / RFC 8693 §2.1: the token endpoint takes application/x-www-form-urlencoded. Repeated
 * names become arrays so the contract layer can refuse them (a parameter must not appear twice).
 */
export function parseFormBody(contentType: string | undefined, body: string): FormFields {
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(contentType ?? '')) {
    throw new InvalidRequest('the request body must be application/x-www-form-urlencoded')
  }
  const form: FormFields = {}
  for (const [k, v] of new URLSearchParams(body)) {
    const prev = form[k]
    form[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v]
  }
  return form
}

/** The header fields that say how a token request's body is to be read. */
export interface BodyFraming {
  contentType: string | undefined
  contentEncoding: string | undefined
  transferEncoding: string | undefined
}

/**
 * A token request's form: a coded body refused before it is read, then read and parsed. Both ways in
 * (token_fast_path.ts and routes/token.ts) call this, so a check added here holds on both.
 */
export async function readTokenForm(framing: BodyFraming, readBody: () => Promise<string>): Promise<FormFields> {
  refuseContentCoding(framing.contentEncoding)
  refuseTransferCoding(framing.transferEncoding)
  return parseFormBody(framing.contentType, await readBody())
}

/**
 * RFC 9110 §8.4: a Content-Encoding other than identity means the body's bytes are not the form. The
 * broker decodes no coding, and reading the coded bytes as plain text would judge a different body than
 * an intermediary honouring the label does; so such a body is refused before it is read.
 */
function refuseContentCoding(contentEncoding: string | undefined): void {
  if (contentEncoding === undefined) return
  if (contentEncoding.split(',').some((c) => !/^\s*(identity)?\s*$/i.test(c))) {
    throw new InvalidRequest('the request body must not be content-coded (Content-Encoding)')
  }
}

/**
 * RFC 9112 §6.1: Node removes the chunked coding but hands over any other transfer coding's bytes
 * undecoded (`Transfer-Encoding: gzip, chunked` arrives as gzip). Read as plain text, that is a different
 * body than the one an intermediary honouring the coding judges, as with Content-Encoding; refused
 * before it is read. Chunked alone, in any case, is every client's right.
 */
function refuseTransferCoding(transferEncoding: string | undefined): void {
  if (transferEncoding === undefined) return
  if (transferEncoding.split(',').some((c) => !/^\s*(chunked)?\s*$/i.test(c))) {
    throw new InvalidRequest('the request body must not have a transfer coding other than chunked (Transfer-Encoding)')
  }
}

/**
 * Collects a Node request body as UTF-8, at most MAX_BODY_BYTES: a declared larger body is refused before
 * reading, and a chunked one stops being buffered (and is refused) once past the limit, so an oversized
 * body costs 32 KiB of memory, not its size.
 */
export function readNodeBody(incoming: IncomingMessage): Promise<string> {
  if (Number(incoming.headers['content-length'] ?? '0') > MAX_BODY_BYTES) return Promise.reject(bodyTooLarge())
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        cleanup()
        // Node discards the rest of the body after the response; nothing more is buffered.
        incoming.resume()
        reject(bodyTooLarge())
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => { cleanup(); resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')) }
    // The only errors a request stream has are the client's: it closed the connection, or Node's request
    // timeout closed it, before the body was complete. A refusal like any malformed body, not a broker fault.
    const onError = (err: Error) => { cleanup(); reject(bodyCutOff(err)) }
    const cleanup = () => {
      incoming.off('data', onData)
      incoming.off('end', onEnd)
      incoming.off('error', onError)
    }
    incoming.on('data', onData)
    incoming.on('end', onEnd)
    incoming.on('error', onError)
  })
}
