import { Hono } from 'hono'
import type { PublicJwk } from '../../keys/jwk.ts'

/** Public keys only. WLCG recommends verifiers refresh about every 6 h; we ask for 10 min so rotation shows soon. */
export function jwksRoutes(jwks: () => readonly PublicJwk[]): Hono {
  const app = new Hono()
  app.get('/jwks', (c) => {
    c.header('Cache-Control', 'public, max-age=600')
    return c.json({ keys: jwks() })
  })
  return app
}
