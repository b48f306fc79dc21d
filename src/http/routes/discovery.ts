import { Hono } from 'hono'
import type { BrokerMetadata } from '../../contract/discovery.ts'

/**
 * OpenID discovery and its RFC 8414 twin, which scitokens-cpp falls back to. Built per request: a key
 * reload (`keys rotate --alg`) changes the signing algorithm without a restart.
 */
export function discoveryRoutes(metadata: () => BrokerMetadata): Hono {
  const app = new Hono()
  const send = () => new Response(JSON.stringify(metadata()), { headers: { 'content-type': 'application/json', 'cache-control': 'public, max-age=3600' } })
  app.get('/.well-known/openid-configuration', send)
  app.get('/.well-known/oauth-authorization-server', send)
  return app
}
