import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { jwksRoutes } from '../../src/http/routes/jwks.ts'
import { KeyStore } from '../../src/keys/key_store.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

/**
 * scitokens-cpp refetches an issuer's key set 600 s after it last fetched it (next_update = now + 600 in
 * get_public_keys_from_web, v0.7.3 and master; its Cache-Control TODO is still open) and never refetches
 * for an unknown kid. A shared HTTP cache in front of /jwks (a reverse proxy, a CDN) may hand it a copy
 * as old as the max-age we serve. So a newly published kid reaches every verifier only after
 * 600 s + max-age, and `keys rotate` must not sign with it before then.
 */
const SCITOKENS_CPP_REFRESH_SECONDS = 600

async function servedMaxAge(): Promise<number> {
  const res = await jwksRoutes(() => []).request('/jwks')
  const cc = res.headers.get('cache-control') ?? ''
  const m = /(?:^|,)\s*max-age=(\d+)/.exec(cc)
  expect(m, cc).not.toBeNull()
  return Number(m![1])
}

/** A data directory whose keyring has a signing key from a day ago and a next key published `age` s ago. */
function keyringWithNextKeyAged(age: number): { env: NodeJS.ProcessEnv; store: KeyStore; prepared: string } {
  const env = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
  const dir = join(env.CTB_DATA_DIR, 'keys')
  mkdirSync(dir, { recursive: true })
  const store = new KeyStore(dir)
  const now = Math.floor(Date.now() / 1000)
  store.ensureJwtKey('ES256', now - 86400)
  const prepared = store.prepareNextJwtKey('ES256', now - age).kid
  return { env, store, prepared }
}

describe('the /jwks cache lifetime and the keys rotate wait', () => {
  it('rotate refuses a next key until scitokens-cpp refresh + the served max-age have passed since it was published', async () => {
    const maxAge = await servedMaxAge()
    const wait = SCITOKENS_CPP_REFRESH_SECONDS + maxAge

    const early = keyringWithNextKeyAged(wait - 30)
    const refused = await cli(['keys', 'rotate'], early.env)
    expect(refused.code, refused.out).toBe(1)
    expect(refused.err).toContain(`kid ${early.prepared} is in /jwks only since`)
    expect(early.store.loadAsymmetricKeys(Math.floor(Date.now() / 1000)).active.kid).not.toBe(early.prepared)

    const late = keyringWithNextKeyAged(wait + 30)
    const rotated = await cli(['keys', 'rotate'], late.env)
    expect(rotated.code, rotated.err).toBe(0)
    expect(late.store.loadAsymmetricKeys(Math.floor(Date.now() / 1000)).active.kid).toBe(late.prepared)
  })

  it('a shared cache adds little: /jwks max-age is at most a tenth of scitokens-cpp refresh', async () => {
    // A max-age as long as the verifier's own refresh doubles how long a rotation must wait; a short one
    // costs one small request a minute per cache.
    expect(await servedMaxAge()).toBeLessThanOrEqual(SCITOKENS_CPP_REFRESH_SECONDS / 10)
  })
})
