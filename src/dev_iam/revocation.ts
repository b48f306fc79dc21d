import type { DevIamContext } from './dev_iam_context.ts'
import { clientAuthEndpoint } from './endpoint_request.ts'

/**
 * RFC 7009 revocation at `path` (IAM's `/revoke`): a client may revoke only its own tokens; the answer is 200
 * either way so token existence does not leak.
 * @see RFC 7009 §2.1–2.2
 */
export function revocationMiddleware(dev: DevIamContext, path: string) {
  return clientAuthEndpoint(dev, path, (ctx, req, rec) => {
    if (rec && rec.clientId === req.clientId) dev.store.delete(req.token)
    ctx.status = 200
    ctx.set('Cache-Control', 'no-store')
    ctx.body = ''
  })
}
