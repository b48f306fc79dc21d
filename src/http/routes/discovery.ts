import { Hono } from 'hono'
import type { BrokerMetadata } from '../../contract/discovery.ts'

/** OpenID discovery and its RFC 8414 twin, which scitokens-cpp falls back to. */
export function discoveryRoutes(metadata: BrokerMetadata): Hono {
  const app = new Hono()
  const body = JSON.stringify(metadata)
  const send = () => new Response(body, { headers: { 'content-type': 'application/json', 'cache-control': 'public, max-age=3600' } })
  app.get('/.well-known/openid-configuration', send)
  app.get('/.well-known/oauth-authorization-server', send)
  return app
}
