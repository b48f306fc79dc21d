/** The front half shared by /introspect and /revoke: bounded form body, client authentication, one `token`. */
import type { Context } from 'koa'
import type { DevIamContext } from './dev_iam_context.ts'
import { authenticateClient } from './endpoint_client_auth.ts'

const MAX_BODY_BYTES = 64 * 1024

async function readForm(ctx: Context): Promise<URLSearchParams | undefined> {
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

