import type { IncomingMessage } from 'node:http'
import { Hono, type Context } from 'hono'
import type { TokenRequestForm } from '../../contract/token_request.ts'
import { clientAddress } from '../client_address.ts'
import { NO_STORE_HEADERS } from '../oauth_error_response.ts'
import { bodyTooLarge, MAX_BODY_BYTES, readNodeBody, readTokenForm } from '../token_request_body.ts'
import type { RequestContext, TokenExchangeResponse } from '../../issuance/exchange.ts'

/**
 * The token exchange as the edge sees it. It is handed a way to read the form rather than the form, so
 * that a body refused before it could be read (wrong type, too large) is accounted for like every other
 * refusal (exchangeToken).
 */
export type Exchange = (readForm: () => Promise<TokenRequestForm>, ctx: RequestContext) => Promise<TokenExchangeResponse>

/**
 * POST /token: RFC 8693 token exchange. Form-encoded in, JSON out, never cached (RFC 6749 §5.1).
 * Errors are thrown as BrokerError and shaped once by oauthErrorReply. Under `serve`, POST /token is
 * answered by token_fast_path.ts with the same pieces; this route serves app.request() and other adapters.
 */
export function tokenRoutes(exchange: Exchange): Hono {
  const app = new Hono()
  app.post('/token', async (c) => {
    const readForm = () => readTokenForm(
      { contentType: c.req.header('content-type'), contentEncoding: c.req.header('content-encoding'), transferEncoding: c.req.header('transfer-encoding') },
      () => readBoundedBody(c))
    // The access log (middleware/access_log.ts) reads what the exchange learnt about the caller.
    const summary = {}
    c.set('summary', summary)
    const res = await exchange(readForm, { requestId: c.get('requestId'), ...clientAddress(c), summary })
    for (const [name, value] of Object.entries(NO_STORE_HEADERS)) c.header(name, value)
    return c.json(res)
  })
  return app
}

/** The body as UTF-8 text, at most MAX_BODY_BYTES bytes, from the Node request when there is one. */
async function readBoundedBody(c: Context): Promise<string> {
  if (Number(c.req.header('content-length') ?? '0') > MAX_BODY_BYTES) throw bodyTooLarge()
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  if (incoming && !incoming.readableDidRead) return readNodeBody(incoming)
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
  throw bodyTooLarge()
}
