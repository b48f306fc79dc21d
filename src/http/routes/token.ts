import type { IncomingMessage } from 'node:http'
import { Hono, type Context } from 'hono'
import { parseTokenExchangeRequest, type TokenExchangeRequest } from '../../contract/token_request.ts'
import { InvalidRequest } from '../../errors.ts'
import { clientAddress } from '../client_address.ts'
import type { RequestContext, TokenExchangeResponse } from '../../issuance/exchange.ts'

/** Whole form bodies above this are refused before parsing (a subject token is at most 16 KiB). */
const MAX_BODY_BYTES = 32 * 1024

export type Exchange = (req: TokenExchangeRequest, ctx: RequestContext) => Promise<TokenExchangeResponse>

/**
 * POST /token: RFC 8693 token exchange. Form-encoded in, JSON out, never cached (RFC 6749 §5.1).
 * Errors are thrown as BrokerError and shaped once by oauthErrorResponse.
 */
export function tokenRoutes(exchange: Exchange): Hono {
  const app = new Hono()
  app.post('/token', async (c) => {
    const form = await readForm(c)
    const req = parseTokenExchangeRequest(form)
    const res = await exchange(req, { requestId: c.get('requestId'), ...clientAddress(c) })
    c.header('Cache-Control', 'no-store')
    c.header('Pragma', 'no-cache')
    return c.json(res)
  })
  app.all('/token', () => {
    throw new InvalidRequest('the token endpoint accepts only POST')
  })
  return app
}

async function readForm(c: Context): Promise<Record<string, string | string[]>> {
  const type = c.req.header('content-type') ?? ''
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(type)) {
    throw new InvalidRequest('the request body must be application/x-www-form-urlencoded')
  }
  const form: Record<string, string | string[]> = {}
  for (const [k, v] of new URLSearchParams(await readBoundedBody(c))) {
    const prev = form[k]
    form[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v]
  }
  return form
}

/**
 * The body as UTF-8 text, at most MAX_BODY_BYTES bytes. A chunked upload (no Content-Length) is read
 * only up to the limit and then cancelled, so an oversized body costs 32 KiB of memory, not its size.
 */
async function readBoundedBody(c: Context): Promise<string> {
  const tooLarge = () => new InvalidRequest(`request body larger than ${MAX_BODY_BYTES} bytes`)
  const declared = Number(c.req.header('content-length') ?? '0')
  if (declared > MAX_BODY_BYTES) throw tooLarge()
  // Under @hono/node-server, read the Node request directly: wrapping it in a Web ReadableStream cost
  // about 0.2 ms of CPU per request, most of POST /token's HTTP overhead (npm run bench).
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  if (incoming && !incoming.readableDidRead) return readIncoming(incoming, tooLarge)
  const stream = c.req.raw.body
  if (!stream) return ''
  const reader = stream.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  // Bounded: a body within the limit arrives in at most MAX_BODY_BYTES non-empty chunks; more reads than that is refused too.
  for (let reads = 0; reads <= MAX_BODY_BYTES; reads++) {
    const { done, value } = await reader.read()
    if (done) return new TextDecoder().decode(Buffer.concat(chunks))
    size += value.byteLength
    if (size > MAX_BODY_BYTES) break
    chunks.push(value)
  }
  await reader.cancel().catch(() => undefined)
  throw tooLarge()
}

/** Collects at most MAX_BODY_BYTES of a Node request body; stops buffering (and rejects) beyond that. */
function readIncoming(incoming: IncomingMessage, tooLarge: () => Error): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        cleanup()
        // Node discards the rest of the body after the response; nothing more is buffered.
        incoming.resume()
        reject(tooLarge())
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => { cleanup(); resolve(Buffer.concat(chunks).toString('utf8')) }
    const onError = (err: Error) => { cleanup(); reject(err) }
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
