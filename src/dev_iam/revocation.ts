import type { Context, Next } from 'koa'
import type { DevIamContext } from './dev_iam_context.ts'
import { authenticated, reply } from './endpoint_request.ts'

/**
 * RFC 7009 revocation at IAM's `/revoke`: a client may revoke only its own tokens; the answer is 200
 * either way so token existence does not leak.
 * @see RFC 7009 §2.1–2.2
 */
export function revocationMiddleware(dev: DevIamContext) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.path !== '/revoke') return next()
    if (ctx.method !== 'POST') return reply(ctx, 405, { error: 'invalid_request', error_description: 'use POST' })
    const req = await authenticated(dev, ctx)
    if (!req) return
    const rec = dev.store.get(req.token, dev.clock.now())
    if (rec && rec.clientId === req.clientId) dev.store.delete(req.token)
    ctx.status = 200
    ctx.set('Cache-Control', 'no-store')
    ctx.body = ''
  }
}
