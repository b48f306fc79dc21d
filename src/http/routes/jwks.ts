import { Hono } from 'hono'
import type { PublicJwk } from '../../keys/jwk.ts'
import { JWKS_MAX_AGE_SECONDS } from '../../keys/key_store.ts'

/**
 * Public keys only. WLCG recommends verifiers refresh about every 6 h, and scitokens-cpp refreshes every
 * 600 s whatever this header says; the max-age bounds only what a shared cache in front of us adds to
 * that, which `keys rotate` waits out too (NEW_KID_VISIBLE_SECONDS).
 */
export function jwksRoutes(jwks: () => readonly PublicJwk[]): Hono {
  const app = new Hono()
  app.get('/jwks', (c) => {
    c.header('Cache-Control', `public, max-age=${JWKS_MAX_AGE_SECONDS}`)
    return c.json({ keys: jwks() })
  })
  return app
}
