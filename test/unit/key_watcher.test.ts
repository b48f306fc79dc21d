import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { watchKeyring } from '../../src/keys/key_watcher.ts'
import { KeyStore } from '../../src/keys/key_store.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { tempDir } from '../support/tmp.ts'

const NOW = 1_800_000_000
const clock = { now: () => NOW }
const stops: Array<() => void> = []
afterEach(() => { for (const s of stops.splice(0)) s() })

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function setup() {
  const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_ISSUER: 'https://broker.example.org' } })
  const { keys } = ensureAndLoadKeys(config, NOW)
  const dir = `${config.data_dir}/keys`
  const triggers: string[] = []
  stops.push(watchKeyring({ dir, inForce: () => keys, reload: async (t) => { triggers.push(t) }, clock, log: silentLogger, debounceMs: 20 }))
  return { dir, keys, triggers }
}

/** Waits (bounded) until `done` holds; fs events and the debounce are asynchronous. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) await sleep(20)
}

describe('watchKeyring', () => {
  it('reloads once, as "watch", when keys rotate writes a new active key', async () => {
    const { dir, triggers } = setup()
    new KeyStore(dir).rotateJwtKey('ES256', NOW, 3600)
    await until(() => triggers.length > 0)
    await sleep(100)
    expect(triggers).toEqual(['watch'])
  })

  it('does not reload when files change but the keyring names the keys in force', async () => {
    const { dir, triggers } = setup()
    const store = new KeyStore(dir)
    // The same keyring rewritten, and an unrelated file: events, but nothing to take up.
    writeFileSync(join(dir, 'jwt', 'keyring.json'), `${JSON.stringify({ keys: store.readKeyring() }, null, 2)}\n`, { mode: 0o600 })
    writeFileSync(join(dir, 'jwt', 'notes.txt'), 'x', { mode: 0o600 })
    await sleep(300)
    expect(triggers).toEqual([])
    // The watcher is still alive afterwards: a real rotation is taken up.
    store.rotateJwtKey('ES256', NOW, 3600)
    await until(() => triggers.length > 0)
    expect(triggers).toEqual(['watch'])
  })
})
