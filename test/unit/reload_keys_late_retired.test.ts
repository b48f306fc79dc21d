import { chmodSync, copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
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

  // The tokens that broker signed until the late reload live on whatever happens to the broker: a restart
  // (a crash, an upgrade, a host reboot) inside that window must publish the held key again, or verifiers
  // refuse them at their next key-set refresh (scitokens-cpp replaces its whole cached set every 600 s).
  it('still publishes the held key after a restart, until the last token it signed expires', async () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const lifetime = config.scitoken.max_lifetime
    const loaded = ensureAndLoadKeys(config, T0)
    const holder = new KeyHolder(loaded.keys)
    const oldKid = loaded.keys.scitoken.kid
    loaded.store.rotateJwtKey(config.scitoken.alg, T0, 4 * DAY)
    const late = T0 + 5 * DAY
    const r = await reloadSigningKeys(holder, 'sighup', { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: fixedClock(late), log: silentLogger })
    expect(r.ok).toBe(true)

    const restarted = ensureAndLoadKeys(config, late + 3600)
    expect(restarted.keys.scitoken.kid).not.toBe(oldKid)
    expect(restarted.keys.jwks.map((k) => k.kid)).toContain(oldKid)
    // A reload after that restart goes on holding it (it is no longer the key that broker signs with).
    const holder2 = new KeyHolder(restarted.keys)
    await reloadSigningKeys(holder2, 'sighup', { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: fixedClock(late + lifetime - 120), log: silentLogger })
    expect(holder2.current.jwks.map((k) => k.kid)).toContain(oldKid)

    // max_lifetime + 60 s after the late reload its last token has expired: a restart then drops it.
    expect(ensureAndLoadKeys(config, late + lifetime + 61).keys.jwks.map((k) => k.kid)).not.toContain(oldKid)
  })

  // The same late take-up without any reload: the broker never heard of the rotation (no watch, no
  // SIGHUP) and is restarted days later, which is also how a replica usually takes up a copied jwt/. It
  // signed with the old key until it stopped, so that key must stay published max_lifetime + 60 s more.
  it('holds the key it signed with before a restart that takes a late rotation up', () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const lifetime = config.scitoken.max_lifetime
    const loaded = ensureAndLoadKeys(config, T0)
    const oldKid = loaded.keys.scitoken.kid
    loaded.store.rotateJwtKey(config.scitoken.alg, T0, 4 * DAY)

    const late = T0 + 5 * DAY
    const restarted = ensureAndLoadKeys(config, late)
    expect(restarted.keys.scitoken.kid).not.toBe(oldKid)
    expect(restarted.keys.jwks.map((k) => k.kid)).toContain(oldKid)
    // A second restart inside the window keeps it; one after the window does not.
    expect(ensureAndLoadKeys(config, late + lifetime - 120).keys.jwks.map((k) => k.kid)).toContain(oldKid)
    expect(ensureAndLoadKeys(config, late + lifetime + 61).keys.jwks.map((k) => k.kid)).not.toContain(oldKid)
  })

  // An operator who removed a compromised key's file wants it gone: the inferred hold lets it go and says so.
  it('lets the last signing key go when its key file was removed, saying why', () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const loaded = ensureAndLoadKeys(config, T0)
    const oldKid = loaded.keys.scitoken.kid
    loaded.store.rotateJwtKey(config.scitoken.alg, T0, 4 * DAY)
    rmSync(join(loaded.store.dir, 'jwt', `${oldKid}.pem`))
    const restarted = ensureAndLoadKeys(config, T0 + 5 * DAY)
    expect(restarted.keys.jwks.map((k) => k.kid)).not.toContain(oldKid)
    expect(restarted.report.heldRecordError).toContain(`the key ${oldKid} this broker signed with before it stopped cannot be published`)
  })

  // Removing a key's file is how an operator drops a compromised key (docs/architecture.md). A hold a
  // late reload recorded for that key must not then keep serve from starting, in the middle of the
  // incident, any more than the inferred hold does: the key is let go, the log says so, and the record
  // is rewritten without it so the next start does not say it again.
  it('lets a recorded hold go when its key file was removed, saying why, and starts', async () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const loaded = ensureAndLoadKeys(config, T0)
    const holder = new KeyHolder(loaded.keys)
    const oldKid = loaded.keys.scitoken.kid
    loaded.store.rotateJwtKey(config.scitoken.alg, T0, 4 * DAY)
    const late = T0 + 5 * DAY
    await reloadSigningKeys(holder, 'sighup', { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: fixedClock(late), log: silentLogger })
    expect(holder.current.jwks.map((k) => k.kid)).toContain(oldKid)

    rmSync(join(loaded.store.dir, 'jwt', `${oldKid}.pem`))
    const restarted = ensureAndLoadKeys(config, late + 3600)
    expect(restarted.keys.jwks.map((k) => k.kid)).not.toContain(oldKid)
    expect(restarted.report.heldRecordError).toContain(`held key ${oldKid}`)
    const again = ensureAndLoadKeys(config, late + 7200)
    expect(again.report.heldRecordError).toBeUndefined()
  })

  // The same removal must count on a running broker too (SIGHUP after removing the file): otherwise a
  // compromised key stays in /jwks for max_lifetime after its file is gone, until a restart drops it.
  it('lets a held key go at a reload once its key file was removed', async () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const loaded = ensureAndLoadKeys(config, T0)
    const holder = new KeyHolder(loaded.keys)
    const oldKid = loaded.keys.scitoken.kid
    loaded.store.rotateJwtKey(config.scitoken.alg, T0, 4 * DAY)
    const late = T0 + 5 * DAY
    const deps = (now: number) => ({ config, selfTest: () => {}, audit: { record: async () => undefined }, clock: fixedClock(now), log: silentLogger })
    await reloadSigningKeys(holder, 'sighup', deps(late))
    expect(holder.current.jwks.map((k) => k.kid)).toContain(oldKid)

    rmSync(join(loaded.store.dir, 'jwt', `${oldKid}.pem`))
    const r = await reloadSigningKeys(holder, 'sighup', deps(late + 60))
    expect(r.ok).toBe(true)
    expect(holder.current.jwks.map((k) => k.kid)).not.toContain(oldKid)
    // Nor does the restart after it bring it back, or refuse.
    expect(ensureAndLoadKeys(config, late + 120).keys.jwks.map((k) => k.kid)).not.toContain(oldKid)
  })

  it('does not hold the key it signed with at a late reload when its key file was removed first', async () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const loaded = ensureAndLoadKeys(config, T0)
    const holder = new KeyHolder(loaded.keys)
    const oldKid = loaded.keys.scitoken.kid
    loaded.store.rotateJwtKey(config.scitoken.alg, T0, 4 * DAY)
    rmSync(join(loaded.store.dir, 'jwt', `${oldKid}.pem`))
    const r = await reloadSigningKeys(holder, 'sighup', { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: fixedClock(T0 + 5 * DAY), log: silentLogger })
    expect(r.ok).toBe(true)
    expect(holder.current.scitoken.kid).not.toBe(oldKid)
    expect(holder.current.jwks.map((k) => k.kid)).not.toContain(oldKid)
  })

  // A key directory serve cannot write to is a supported set-up (it only costs a warning at start). A
  // rotation taken up on time holds nothing, so a record it cannot write loses no key: that is a warning
  // about the next late take-up, not an error claiming held keys will be dropped.
  it('warns, and says no held key is lost, when a record without holds cannot be written', async () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const loaded = ensureAndLoadKeys(config, T0)
    const holder = new KeyHolder(loaded.keys)
    loaded.store.rotateJwtKey(config.scitoken.alg, T0 + 3600, 4 * DAY)
    // A directory at the record's path: the replacement is refused, as on a read-only key directory.
    const file = join(loaded.store.dir, 'held_publications.json')
    rmSync(file)
    mkdirSync(file)
    const lines: { level: string; msg: string }[] = []
    const log = { info() {}, warn: (msg: string) => { lines.push({ level: 'warn', msg }) }, error: (msg: string) => { lines.push({ level: 'error', msg }) } }
    const r = await reloadSigningKeys(holder, 'watch', { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: fixedClock(T0 + 3601), log })
    expect(r.ok).toBe(true)
    expect(holder.current.held).toBeUndefined()
    expect(lines.filter((l) => l.level === 'error')).toEqual([])
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg).join('\n')).toMatch(/could not record the kid this broker signs with/)
  })

  it('reports a start whose record without holds cannot be written as a warning, not a held key lost', () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const keys = join(config.data_dir, 'keys')
    mkdirSync(keys, { recursive: true, mode: 0o700 })
    // A symlink to itself: no record to read, and no replacement can be made there (ELOOP).
    symlinkSync('held_publications.json', join(keys, 'held_publications.json'))
    const started = ensureAndLoadKeys(config, T0)
    expect(started.report.heldRecordError).toBeUndefined()
    expect(started.report.signingRecordError).toMatch(/cannot record the kid this broker signs with/)
  })

  // The record may only bring back a key this broker made: each kid must have its own private key file,
  // and a record that cannot be honoured stops the start with one line rather than dropping the key.
  it('refuses to start on a hold record it cannot honour, naming the file', () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const loaded = ensureAndLoadKeys(config, T0)
    const file = join(loaded.store.dir, 'held_publications.json')
    copyFileSync(join(loaded.store.dir, 'jwt', `${loaded.keys.scitoken.kid}.pem`), join(loaded.store.dir, 'jwt', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.pem'))
    for (const [body, why] of [
      ['{"held": [', /held_publications\.json is not valid JSON/],
      ['{"held": [{"kid": "abc"}]}', /held_publications\.json must hold/],
      ['{"held": [{"kid": "../jwt/keyring", "until": 1900000000}]}', /is not a key id/],
      // A key file that is there but is another key: a damaged key directory, not an operator's decision.
      ['{"held": [{"kid": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "until": 1900000000}]}', /held key AAAA\S* cannot be published until 2030-03-17T17:46:40\.000Z/],
    ] as const) {
      writeFileSync(file, body, { mode: 0o600 })
      expect(() => ensureAndLoadKeys(config, T0 + 60), body).toThrow(why)
    }
    // A record that cannot be read is said to be that, not bad JSON: the operator must fix its mode or owner.
    writeFileSync(file, '{"held": []}', { mode: 0o600 })
    chmodSync(file, 0o644)
    expect(() => ensureAndLoadKeys(config, T0 + 60)).toThrow(/has mode 0644/)
    expect(() => ensureAndLoadKeys(config, T0 + 60)).not.toThrow(/not valid JSON/)
    chmodSync(file, 0o600)
    // An expired hold is no reason to refuse: its tokens are gone.
    writeFileSync(file, '{"held": [{"kid": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "until": 1800000001}]}', { mode: 0o600 })
    expect(ensureAndLoadKeys(config, T0 + 60).keys.jwks).toHaveLength(2)
  })
})
