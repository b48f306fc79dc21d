import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { KeyHolder } from '../../src/keys/key_holder.ts'
import { reloadSigningKeys } from '../../src/keys/reload_keys.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { tempDir } from '../support/tmp.ts'

// `keys rotate` sets the old key's publish_until from the moment it ran. A serve that takes the rotation
// up late (scitoken.watch_keys off, or a file system without change events, and SIGHUP sent days later;
// a replica whose keys/jwt/ copy came late) signed with the old key until the reload: its tokens are
// valid for up to scitoken.max_lifetime after that. The old public key must stay in that broker's /jwks
// that long (README, keys rotate: "until every token it signed has expired"), not vanish at the reload.
describe('a key reload that retires the key the broker was signing with', () => {
  const T0 = 1_800_000_000
  const DAY = 86400

  it('keeps that key published for scitoken.max_lifetime after the reload, even past its publish_until', async () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const lifetime = config.scitoken.max_lifetime // 6 h by default
    const loaded = ensureAndLoadKeys(config, T0)
    const holder = new KeyHolder(loaded.keys)
    const oldKid = loaded.keys.scitoken.kid
    // Rotated on disk at T0 with the 4-day floor; the running broker is told only 5 days later.
    loaded.store.rotateJwtKey(config.scitoken.alg, T0, 4 * DAY)
    const deps = (now: number) => ({ config, selfTest: () => {}, audit: { record: async () => undefined }, clock: fixedClock(now), log: silentLogger })

    const late = T0 + 5 * DAY
    const r = await reloadSigningKeys(holder, 'sighup', deps(late))
    expect(r.ok).toBe(true)
    expect(holder.current.scitoken.kid).not.toBe(oldKid)
    expect(holder.current.jwks.map((k) => k.kid)).toContain(oldKid)

    // A second reload within that window (another SIGHUP, a file event) keeps it too.
    await reloadSigningKeys(holder, 'sighup', deps(late + lifetime - 120))
    expect(holder.current.jwks.map((k) => k.kid)).toContain(oldKid)

    // Once the last token it signed has expired (max_lifetime + 60 s of skew after the reload), it goes.
    await reloadSigningKeys(holder, 'sighup', deps(late + lifetime + 61))
    expect(holder.current.jwks.map((k) => k.kid)).not.toContain(oldKid)
  })
})
