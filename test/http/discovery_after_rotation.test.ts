import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { KeyHolder } from '../../src/keys/key_holder.ts'
import { KeyStore } from '../../src/keys/key_store.ts'
import { testDeps } from '../support/broker_deps.ts'

// The metadata names the algorithms the broker's tokens are signed with. After `keys rotate --alg RS256`
// is taken up by a running broker (a reload, no restart), RS256 tokens go out: the document must say so,
// as /jwks already does, rather than keep the algorithm the broker started with.
describe('discovery metadata after a key reload to another algorithm', () => {
  it('lists the algorithm now signing', async () => {
    const deps = testDeps()
    const holder = new KeyHolder(deps.keys)
    const app = createApp({ ...deps, keys: holder.view })
    const before = await (await app.request('/.well-known/openid-configuration')).json() as { id_token_signing_alg_values_supported: string[] }
    expect(before.id_token_signing_alg_values_supported).toEqual(['ES256'])

    const store = new KeyStore(`${deps.config.data_dir}/keys`)
    const now = Math.floor(Date.now() / 1000)
    store.rotateJwtKey('RS256', now, 3600)
    const { active, jwks } = store.loadAsymmetricKeys(now)
    holder.swap({ ...holder.current, scitoken: active, jwks })

    for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
      const doc = await (await app.request(path)).json() as { id_token_signing_alg_values_supported: string[] }
      expect(doc.id_token_signing_alg_values_supported, path).toContain('RS256')
    }
  })
})
