import { spawnSync } from 'node:child_process'
import { createPublicKey, generateKeyPairSync } from 'node:crypto'
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { jwkThumbprint } from '../../src/keys/jwk.ts'
import { KeyHolder } from '../../src/keys/key_holder.ts'
import { KeyStore } from '../../src/keys/key_store.ts'
import { reloadSigningKeys } from '../../src/keys/reload_keys.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'
import { systemClock } from '../../src/lib/clock.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

const quiet: Logger = { info: () => {}, warn: () => {}, error: () => {} }
const published = (ks: KeyStore) => ks.loadAsymmetricKeys(systemClock.now()).jwks.map((k) => k.kid)

// A verifier accepts a SciToken whose kid the issuer's /jwks lists (scitokens-cpp replaces its cached key
// set with the fetched one at each 600 s refresh, docs/htcondor-tokens.md §5.3). A stolen private key
// stops minting accepted tokens only once its kid leaves /jwks: a compromise rotation must unpublish it at
// once, and nothing that holds keys past their publish_until (a reload, a restart, a replica) may bring
// it back.
describe('keys rotate --compromised', () => {
  it('signs with a fresh key, drops every key that lay beside the stolen one from /jwks, says so, and audits it', async () => {
    const e = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const ks = new KeyStore(join(e.CTB_DATA_DIR, 'keys'))
    const before = ks.readKeyring().map((k) => k.kid)
    expect(before).toHaveLength(2)
    const stolen = await cli(['token', 'create', '--scitoken', '--sub', 'alice', '--aud', 'condor://ap.example.org:9618', '--scope', 'condor:/READ'], e)
    expect(stolen.code, stolen.err).toBe(0)
    expect(JSON.parse((await cli(['token', 'inspect', stolen.out, '--json'], e)).out).accepted).toBe(true)

    const r = await cli(['keys', 'rotate', '--compromised'], e)
    expect(r.code, r.err).toBe(0)
    const now = published(ks)
    for (const kid of before) expect(now).not.toContain(kid)
    expect(now).toHaveLength(2)
    expect(r.out).toMatch(/tokens signed with .* are refused by verifiers .*renew/)
    // The broker's own verification (token inspect) refuses it too.
    const ins = JSON.parse((await cli(['token', 'inspect', stolen.out, '--json'], e)).out)
    expect(ins.accepted).toBe(false)
    const audited = await cli(['audit', 'list', '--type', 'key.rotated', '--json'], e)
    const rec = JSON.parse(audited.out.trim().split("\n").at(-1)!).event
    expect(rec.reason).toMatch(/compromised/)
    expect([...rec.detail.unpublished].sort()).toEqual([...before].sort())
    expect((await cli(['keys', 'list'], e)).out).toContain(`${before[0]}  ES256`)
  })

  it('the compromised kid stays out of /jwks after a running serve reloads, after a restart, and on a replica whose jwt/ copy still has its .pem', async () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const loaded = ensureAndLoadKeys(config, systemClock.now())
    const holder = new KeyHolder(loaded.keys)
    const compromised = loaded.keys.scitoken.kid
    const jwtDir = join(config.data_dir, 'keys', 'jwt')
    const saved = join(mkdtempSync(join(tempDir(), 'pem-')), 'k.pem')
    copyFileSync(join(jwtDir, `${compromised}.pem`), saved)

    const r = await cli(['keys', 'rotate', '--compromised'], { CTB_DATA_DIR: config.data_dir, CTB_TRUST_DOMAIN: 'pool.example.org' })
    expect(r.code, r.err).toBe(0)
    const reload = await reloadSigningKeys(holder, 'watch', { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: systemClock, log: quiet })
    expect(reload.ok).toBe(true)
    expect(holder.current.jwks.map((k) => k.kid)).not.toContain(compromised)

    const restarted = ensureAndLoadKeys(config, systemClock.now())
    expect(restarted.keys.jwks.map((k) => k.kid)).not.toContain(compromised)

    // A replica given the new keyring by a copy that left the old .pem in place.
    if (!existsSync(join(jwtDir, `${compromised}.pem`))) copyFileSync(saved, join(jwtDir, `${compromised}.pem`))
    const replica = ensureAndLoadKeys(config, systemClock.now())
    expect(replica.keys.jwks.map((k) => k.kid)).not.toContain(compromised)
    const replicaHolder = new KeyHolder(loaded.keys)
    await reloadSigningKeys(replicaHolder, 'sighup', { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: systemClock, log: quiet })
    expect(replicaHolder.current.jwks.map((k) => k.kid)).not.toContain(compromised)
  })
})

// Replicas share keys/ by copies and each reads the keyring with its own clock. The CLI host's `now` is
// the compromised keys' publish_until; a replica whose clock runs a few seconds behind must not find them
// still published (nor fail its reload over the .pem the CLI removed, which would leave its previous key
// set, the stolen kid in it, in force).
describe('keys rotate --compromised, read by a host whose clock is behind', () => {
  it('publishes no compromised kid and loads without the removed .pem files', () => {
    const ks = new KeyStore(join(tempDir(), 'keys'))
    const t = 1_800_000_000
    ks.ensureJwtKey('ES256', t)
    ks.prepareNextJwtKey('ES256', t)
    const before = ks.readKeyring().map((k) => k.kid)
    const r = ks.rotateCompromised('ES256', t + 100)
    const behind = ks.loadAsymmetricKeys(t + 95)
    expect(behind.active.kid).toBe(r.active.kid)
    expect(behind.jwks.map((k) => k.kid).sort()).toEqual([r.active.kid, r.next.kid].sort())
    for (const kid of before) expect(behind.jwks.map((k) => k.kid)).not.toContain(kid)
  })
})

// The keyring write is what takes the stolen kid out of /jwks; removing the .pem files comes after it.
// A removal that fails must not leave that change unaudited (the key.rotated record was written only
// after them), and the operator must learn which private key file is still on disk.
describe('keys rotate --compromised when a .pem cannot be removed', () => {
  it('still audits the rotation, names the file left behind and exits non-zero', async () => {
    const e = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const ks = new KeyStore(join(e.CTB_DATA_DIR, 'keys'))
    const stolen = ks.readKeyring()[0]!.kid
    const pem = join(e.CTB_DATA_DIR, 'keys', 'jwt', `${stolen}.pem`)
    // root ignores file modes, so the removal is made to fail with a directory in the .pem's place.
    rmSync(pem)
    mkdirSync(pem)
    writeFileSync(join(pem, 'x'), 'x')

    const r = await cli(['keys', 'rotate', '--compromised'], e)
    expect(r.code).not.toBe(0)
    expect(r.err).toContain(`${stolen}.pem`)
    expect(r.out).not.toMatch(/pem removed/)
    expect(ks.readKeyring().find((k) => k.kid === stolen)?.compromised).toBeDefined()
    const audited = await cli(['audit', 'list', '--type', 'key.rotated', '--json'], e)
    const rec = JSON.parse(audited.out.trim().split('\n').at(-1)!).event
    expect(rec.detail.unpublished).toContain(stolen)
  })
})

// Interrupted between the keyring write and the removals (a kill, a power cut), a rotation leaves the
// keys marked compromised with their .pem files on disk. Running the command again is what an operator
// does then: it must not leave the stolen private key there for good.
describe('keys rotate --compromised run again after an interrupted one', () => {
  it('removes the .pem files of keys an earlier run marked compromised', async () => {
    const e = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const ks = new KeyStore(join(e.CTB_DATA_DIR, 'keys'))
    const stolen = ks.readKeyring()[0]!.kid
    const pem = join(e.CTB_DATA_DIR, 'keys', 'jwt', `${stolen}.pem`)
    const saved = join(mkdtempSync(join(tempDir(), 'pem-')), 'k.pem')
    copyFileSync(pem, saved)
    expect((await cli(['keys', 'rotate', '--compromised'], e)).code).toBe(0)
    copyFileSync(saved, pem)

    const r = await cli(['keys', 'rotate', '--compromised'], e)
    expect(r.code, r.err).toBe(0)
    expect(existsSync(pem)).toBe(false)
  })
})

// A serve that took a rotation up after the retired key's publish_until had passed keeps that key in
// /jwks (held, reload_keys.ts) though the keyring calls it expired; a normal rotation prunes such an entry
// and leaves its .pem. It is in /jwks as much as any key, and its private key lay beside the stolen one:
// --compromised must take it out of a running serve's /jwks at its reload, and of a restart's.
describe('keys rotate --compromised and a key a running serve holds past its publish_until', () => {
  it('the held kid leaves /jwks at the next reload and stays out after a restart', async () => {
    const env = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
    const config = loadConfig({ env })
    const loaded = ensureAndLoadKeys(config, systemClock.now())
    const holder = new KeyHolder(loaded.keys)
    const first = loaded.keys.scitoken.kid
    const ks = new KeyStore(join(config.data_dir, 'keys'))
    // Rotated elsewhere long enough ago that the old key's publish_until has passed.
    ks.rotateJwtKey('ES256', systemClock.now(), 0)
    const deps = { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: systemClock, log: quiet }
    await new Promise((r) => setTimeout(r, 1100))
    expect((await reloadSigningKeys(holder, 'watch', deps)).ok).toBe(true)
    expect(holder.current.jwks.map((k) => k.kid)).toContain(first)

    const r = await cli(['keys', 'rotate', '--compromised'], env)
    expect(r.code, r.err).toBe(0)
    expect((await reloadSigningKeys(holder, 'watch', deps)).ok).toBe(true)
    expect(holder.current.jwks.map((k) => k.kid)).not.toContain(first)
    expect(ensureAndLoadKeys(config, systemClock.now()).keys.jwks.map((k) => k.kid)).not.toContain(first)
  })
})

// Nothing serialised the keyring's writers: a serve starting (or keys init) writes a new <kid>.pem, then
// the keyring it read before. A --compromised run between the two took that unlisted .pem for a leftover,
// marked it and removed it; the starting serve then wrote its stale keyring over the compromise rotation's,
// listing a key whose file is gone (the start fails on it) and the stolen keys unmarked (back in /jwks).
// Each keyring change must see the one before it: the second waits for the first, or is refused.
describe('keys rotate --compromised while a serve is preparing a key', () => {
  it('does not interleave with the preparation: the keyring stays loadable and the stolen key marked', () => {
    const dir = join(tempDir(), 'keys')
    const t = 1_800_000_000
    new KeyStore(dir).ensureJwtKey('ES256', t)
    const stolen = new KeyStore(dir).readKeyring()[0]!.kid
    let inner: unknown
    const starting = new KeyStore(dir, {
      lockWaitMs: 200,
      seam: {
        afterKeyFileWritten: () => {
          if (inner !== undefined) return
          try {
            inner = new KeyStore(dir, { lockWaitMs: 200 }).rotateCompromised('ES256', t + 10)
          } catch (err) {
            inner = err
          }
        },
      },
    })
    starting.prepareNextJwtKey('ES256', t + 10)
    // Run again now that the preparation is done, as an operator told to retry would.
    const compromised = inner instanceof Error ? new KeyStore(dir).rotateCompromised('ES256', t + 20) : undefined
    const ks = new KeyStore(dir)
    expect(ks.readKeyring().find((k) => k.kid === stolen)?.compromised).toBeDefined()
    expect(ks.loadAsymmetricKeys(t + 30).jwks.map((k) => k.kid)).not.toContain(stolen)
    // The run that came in the middle was refused, saying why, rather than waiting forever.
    expect(inner instanceof Error ? inner.message : '').toMatch(/being changed/)
    expect(compromised?.unpublished).toContain(stolen)
  })
})

// A rotation killed while holding the keyring lock must not keep every later one refused: a lock whose
// process no longer runs is taken over.
describe('a keyring lock left by a process that no longer runs', () => {
  it('is taken over by the next keyring change', () => {
    const dir = join(tempDir(), 'keys')
    const t = 1_800_000_000
    new KeyStore(dir).ensureJwtKey('ES256', t)
    const gone = spawnSync(process.execPath, ['-e', '']).pid
    expect(gone).toBeGreaterThan(0)
    writeFileSync(join(dir, '.keyring.lock'), `${gone}\n`, { mode: 0o600 })
    const r = new KeyStore(dir, { lockWaitMs: 200 }).rotateCompromised('ES256', t + 10)
    expect(new KeyStore(dir).loadAsymmetricKeys(t + 20).active.kid).toBe(r.active.kid)
    expect(existsSync(join(dir, '.keyring.lock'))).toBe(false)
  })
})

// --compromised sweeps jwt/<kid>.pem files the keyring no longer lists, since a serve may hold such a
// key in /jwks. Only a private key named by its own RFC 7638 thumbprint can be held (publicJwkOf checks
// it); any other .pem there (an operator's copy kept for the incident, a certificate) can never reach
// /jwks, and removing it unannounced destroyed it for nothing. A key of the broker's own that a
// restore left with the wrong mode is still one of its keys, and goes.
describe('keys rotate --compromised and .pem files in jwt/ that are not the broker\'s keys', () => {
  it('leaves them in place and says so, and still takes an own key whatever its mode', async () => {
    const e = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const jwt = join(e.CTB_DATA_DIR, 'keys', 'jwt')
    const ks = new KeyStore(join(e.CTB_DATA_DIR, 'keys'))
    const stolen = ks.readKeyring()[0]!.kid
    // A copy of the stolen key under another name, and a file that is no key at all.
    copyFileSync(join(jwt, `${stolen}.pem`), join(jwt, 'incident-copy.pem'))
    writeFileSync(join(jwt, 'notes.pem'), 'not a key\n', { mode: 0o600 })
    // One of the broker's own keys, pruned from the keyring, restored world-readable.
    const pruned = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    const prunedKid = jwkThumbprint(createPublicKey(pruned))
    writeFileSync(join(jwt, `${prunedKid}.pem`), pruned.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o644 })
    chmodSync(join(jwt, `${prunedKid}.pem`), 0o644)

    const r = await cli(['keys', 'rotate', '--compromised'], e)
    expect(r.code, r.err).toBe(0)
    expect(existsSync(join(jwt, 'incident-copy.pem'))).toBe(true)
    expect(existsSync(join(jwt, 'notes.pem'))).toBe(true)
    expect(r.err).toContain('incident-copy.pem')
    expect(r.err).toContain('notes.pem')
    expect(existsSync(join(jwt, `${prunedKid}.pem`))).toBe(false)
    expect(ks.readKeyring().find((k) => k.kid === prunedKid)?.compromised).toBeDefined()
    expect(existsSync(join(jwt, `${stolen}.pem`))).toBe(false)
  })
})

// A --compromised run that could not remove a .pem says so once, on exit; keys list is where an operator
// checks the keys afterwards (and after restoring files from a backup), and it called such a key just
// "compromised", as if its private key file were gone.
describe('keys list after --compromised left a .pem on disk', () => {
  it('says the compromised key\'s private key file is still there', async () => {
    const e = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const ks = new KeyStore(join(e.CTB_DATA_DIR, 'keys'))
    const [stolen, other] = ks.readKeyring().map((k) => k.kid)
    const pem = join(e.CTB_DATA_DIR, 'keys', 'jwt', `${stolen}.pem`)
    const saved = join(mkdtempSync(join(tempDir(), 'pem-')), 'k.pem')
    copyFileSync(pem, saved)
    expect((await cli(['keys', 'rotate', '--compromised'], e)).code).toBe(0)
    copyFileSync(saved, pem)

    const r = await cli(['keys', 'list'], e)
    expect(r.code, r.err).toBe(0)
    const line = (kid: string) => r.out.split('\n').find((l) => l.includes(kid)) ?? ''
    expect(line(stolen!)).toContain(`jwt/${stolen}.pem still on disk`)
    expect(line(other!)).toContain('compromised')
    expect(line(other!)).not.toContain('still on disk')
  })
})
