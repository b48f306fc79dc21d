import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { KeyStore } from '../../src/keys/key_store.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'
import { tempDir } from '../support/tmp.ts'

const NOW = 1_800_000_000

// scitokens-cpp keeps a fetched key set 600 s and refuses an unknown kid until then (docs/htcondor-tokens.md
// §5.3): a key serve creates by itself must come with a published next key, or the first `keys rotate`
// signs with a kid no verifier has fetched.
describe('serve start-up keys', () => {
  it('a fresh data directory gets a signing key and a published next key that does not sign', () => {
    const dir = tempDir()
    const config = loadConfig({ env: { CTB_DATA_DIR: dir } })
    const { keys, report } = ensureAndLoadKeys(config, NOW)
    const ring = new KeyStore(join(dir, 'keys')).readKeyring()
    const next = ring.find((k) => k.next === true)
    expect(next).toBeDefined()
    expect(report.nextJwtKeyCreated).toBe(next!.kid)
    expect(keys.scitoken.kid).not.toBe(next!.kid)
    expect(keys.jwks.map((k) => k.kid).sort()).toEqual([keys.scitoken.kid, next!.kid].sort())
    // A rotation now signs with the kid verifiers have had since start-up.
    expect(new KeyStore(join(dir, 'keys')).rotateJwtKey('ES256', NOW + 700, 600).publishedSince).toBe(NOW)
  })

  it('a keyring written before next keys existed gets one at start-up, the signing key unchanged', () => {
    const dir = tempDir()
    const store = new KeyStore(join(dir, 'keys'))
    const old = store.ensureJwtKey('ES256', NOW - 86400).entry
    const config = loadConfig({ env: { CTB_DATA_DIR: dir } })
    const { keys } = ensureAndLoadKeys(config, NOW)
    expect(keys.scitoken.kid).toBe(old.kid)
    expect(store.readKeyring().filter((k) => k.next === true)).toHaveLength(1)
  })

  it('a key directory it cannot write to still starts, signing with the keys it has, and says why', () => {
    const dir = tempDir()
    const store = new KeyStore(join(dir, 'keys'))
    const old = store.ensureJwtKey('ES256', NOW - 86400).entry
    // A read-only mount (the tests run as root, whom file modes do not stop): the write fails as it would there.
    const readOnly = vi.spyOn(KeyStore.prototype, 'prepareNextJwtKey').mockImplementation(() => {
      throw Object.assign(new Error("EROFS: read-only file system, open 'keys/jwt/.keyring.json'"), { code: 'EROFS' })
    })
    try {
      const config = loadConfig({ env: { CTB_DATA_DIR: dir } })
      const { keys, report } = ensureAndLoadKeys(config, NOW)
      expect(keys.scitoken.kid).toBe(old.kid)
      expect(keys.jwks.map((k) => k.kid)).toEqual([old.kid])
      expect(report.nextJwtKeyError).toMatch(/EROFS/)
    } finally {
      readOnly.mockRestore()
    }
  })
})
