/** The front half shared by /introspect and /revoke: bounded form body, client authentication, one `token`. */
import type { Context, Next } from 'koa'
import type { DevIamContext } from './dev_iam_context.ts'
import { authenticateClient } from './endpoint_client_auth.ts'
import type { TokenRecord } from './token_store.ts'

const MAX_BODY_BYTES = 64 * 1024

/** A bounded `application/x-www-form-urlencoded` body; undefined when it is anything else or too large. */
export async function readForm(ctx: Context): Promise<URLSearchParams | undefined> {
  if (!ctx.is('application/x-www-form-urlencoded')) return undefined
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) return undefined
    chunks.push(chunk)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}

export function reply(ctx: Context, status: number, body: Record<string, unknown>): void {
  ctx.status = status
  ctx.set('Cache-Control', 'no-store')
  ctx.set('Pragma', 'no-cache')
  ctx.body = body
}

/** Shared front half of /introspect and /revoke: form body, client authentication, one `token`. */
export async function authenticated(dev: DevIamContext, ctx: Context): Promise<{ clientId: string; token: string } | undefined> {
  const form = await readForm(ctx)
  if (!form) {
    reply(ctx, 400, { error: 'invalid_request', error_description: 'expected an application/x-www-form-urlencoded body' })
    return undefined
  }
  const auth = authenticateClient(dev, ctx.get('authorization') || undefined, form)
  if (!auth.ok) {
    if (auth.usedBasic) ctx.set('WWW-Authenticate', `Basic realm="${dev.issuer}"`)
    reply(ctx, 401, { error: 'invalid_client', error_description: 'client authentication failed' })
    return undefined
  }
  const tokens = form.getAll('token')
  if (tokens.length !== 1 || tokens[0] === '') {
    reply(ctx, 400, { error: 'invalid_request', error_description: 'exactly one token parameter is required' })
    return undefined
  }
  return { clientId: auth.client.client_id, token: tokens[0]! }
}


/**
 * A client-authenticated POST endpoint at `path` (introspection, revocation): other paths pass on, other
 * methods get 405, a failed client authentication is answered by `authenticated`; `handle` gets the
 * token from the form and the record this IAM still holds for it, if any.
 */
export function clientAuthEndpoint(
  dev: DevIamContext,
  path: string,
  handle: (ctx: Context, req: { clientId: string; token: string }, rec: TokenRecord | undefined) => void,
) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.path !== path) return next()
    if (ctx.method !== 'POST') return reply(ctx, 405, { error: 'invalid_request', error_description: 'use POST' })
    const req = await authenticated(dev, ctx)
    if (!req) return
    handle(ctx, req, dev.store.get(req.token, dev.clock.now()))
  }
}
