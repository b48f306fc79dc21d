import { createPublicKey, generateKeyPairSync } from 'node:crypto'
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { calculateJwkThumbprint, exportJWK } from 'jose'
import { describe, expect, it } from 'vitest'
import { scramble } from '../../src/keys/condor_key_file.ts'
import { KeyStore, loadIdTokenKeyFile } from '../../src/keys/key_store.ts'
import { keyStatus } from '../../src/keys/key_status.ts'
import { jwkThumbprint } from '../../src/keys/jwk.ts'
import { mintIdToken, prepareIdTokenKey } from '../../src/issuance/idtoken.ts'
import { tempDir } from '../support/tmp.ts'

describe('KeyStore: HTCondor keys', () => {
  it('creates a 64-byte key with mode 0600 in a 0700 directory, and never overwrites it', () => {
    const store = new KeyStore(join(tempDir(), 'keys'))
    const path = store.createCondorKey('POOL')
    expect(statSync(path).size).toBe(64)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(statSync(join(path, '..')).mode & 0o777).toBe(0o700)
    const before = readFileSync(path)
    expect(() => store.createCondorKey('POOL')).toThrow(/already exists/)
    expect(readFileSync(path)).toEqual(before)
  })

  it('imports an existing pool key byte for byte so broker and collector sign alike', () => {
    const dir = tempDir()
    const poolFile = join(dir, 'POOL')
    const raw = scramble(Buffer.from(Array.from({ length: 64 }, (_, i) => i)))
    writeFileSync(poolFile, raw, { mode: 0o600 })
    const store = new KeyStore(join(dir, 'keys'))
    const imported = store.importCondorKey(poolFile)
    expect(readFileSync(imported)).toEqual(raw)
    const claims = { iss: 'td', sub: 'a@td', iat: 1, exp: 2, jti: '00' }
    expect(mintIdToken(claims, store.loadIdTokenKey('POOL'))).toBe(mintIdToken(claims, prepareIdTokenKey('POOL', raw)))
  })

  it.each([0o640, 0o604, 0o660, 0o644])('refuses a key file with mode %o in one line', (mode) => {
    const f = join(tempDir(), 'POOL')
    writeFileSync(f, Buffer.alloc(64, 1))
    chmodSync(f, mode)
    let msg = ''
    try { loadIdTokenKeyFile(f, 'POOL') } catch (e) { msg = (e as Error).message }
    expect(msg).toMatch(/must not be accessible to group or other/)
    expect(msg).not.toContain('\n')
  })

  it('refuses key names HTCondor would skip', () => {
    const store = new KeyStore(tempDir())
    for (const bad of ['.hidden', 'key~', 'x.sh', '../etc', 'a/b', '']) expect(() => store.condorKeyPath(bad)).toThrow(/invalid key name/)
  })
})

describe('KeyStore: SciToken keys', () => {
  it('uses the RFC 7638 thumbprint as kid (same as jose)', async () => {
    const store = new KeyStore(tempDir())
    for (const alg of ['ES256', 'RS256'] as const) {
      const { active } = (store.rotateJwtKey(alg, 1000, 10), store.loadAsymmetricKeys(1000))
      expect(active.alg).toBe(alg)
      expect(active.kid).toBe(await calculateJwkThumbprint(await exportJWK(active.publicKey)))
      expect(jwkThumbprint(active.publicKey)).toBe(active.kid)
    }
  })

  it('rotation keeps the old public key published until its window ends, then drops it', () => {
    const store = new KeyStore(tempDir())
    const first = store.ensureJwtKey('ES256', 1000).entry
    const r = store.rotateJwtKey('ES256', 2000, 500)
    expect(r.retired?.kid).toBe(first.kid)
    const during = store.loadAsymmetricKeys(2400)
    expect(during.active.kid).toBe(r.active.kid)
    expect(during.jwks.map((k) => k.kid).sort()).toEqual([first.kid, r.active.kid, r.next.kid].sort())
    const after = store.loadAsymmetricKeys(2501)
    expect(after.jwks.map((k) => k.kid).sort()).toEqual([r.active.kid, r.next.kid].sort())
  })

  // scitokens-cpp keeps the key set it fetched for 600 s and does not refetch for an unknown kid ("Key ID is
  // not published by the issuer", docs/htcondor-tokens.md §5.3): a key must be in /jwks before it signs.
  it('rotation signs with the key published since the previous rotation, and publishes the one after it', () => {
    const store = new KeyStore(tempDir())
    store.ensureJwtKey('ES256', 1000)
    const r1 = store.rotateJwtKey('ES256', 2000, 500)
    expect(r1.publishedSince).toBeUndefined()
    expect(store.loadAsymmetricKeys(2000).active.kid).toBe(r1.active.kid)
    expect(store.loadAsymmetricKeys(2000).jwks.map((k) => k.kid)).toContain(r1.next.kid)
    expect(r1.next.kid).not.toBe(r1.active.kid)
    const r2 = store.rotateJwtKey('ES256', 9000, 500)
    expect(r2.active.kid).toBe(r1.next.kid)
    expect(r2.publishedSince).toBe(2000)
    expect(store.loadAsymmetricKeys(9000).active.kid).toBe(r1.next.kid)
    expect(store.loadAsymmetricKeys(9000).jwks.map((k) => k.kid).sort()).toEqual([r1.active.kid, r1.next.kid, r2.next.kid].sort())
  })

  it('keys init prepares the next key once, published but not signing', () => {
    const store = new KeyStore(tempDir())
    const active = store.ensureJwtKey('ES256', 1000).entry
    const next = store.prepareNextJwtKey('ES256', 1000)
    expect(store.prepareNextJwtKey('ES256', 1100).kid).toBe(next.kid)
    const { active: signing, jwks } = store.loadAsymmetricKeys(1100)
    expect(signing.kid).toBe(active.kid)
    expect(jwks.map((k) => k.kid).sort()).toEqual([active.kid, next.kid].sort())
    expect(store.ensureJwtKey('ES256', 1200).entry.kid).toBe(active.kid)
    expect(store.rotateJwtKey('ES256', 2000, 500).active.kid).toBe(next.kid)
  })

  it('a prepared key of another algorithm is never made active', () => {
    const store = new KeyStore(tempDir())
    store.ensureJwtKey('ES256', 1000)
    const es = store.prepareNextJwtKey('ES256', 1000)
    const r = store.rotateJwtKey('RS256', 2000, 500)
    expect(r.active.alg).toBe('RS256')
    expect(r.publishedSince).toBeUndefined()
    expect(store.loadAsymmetricKeys(2000).active.kid).toBe(r.active.kid)
    expect(store.loadAsymmetricKeys(2501).jwks.map((k) => k.kid)).not.toContain(es.kid)
  })

  // Downgrade and mixed replicas: a binary from before next keys signs with the first entry that has no
  // `retired`, and its rotation retires that one and appends a fresh key (olderBinaryRotate below). After
  // `keys init` and one such rotation it signs with the prepared key. A later rotation by this binary must
  // keep every key that may have signed published until its tokens expired.
  it('keeps a prepared key an older binary signed with published, even when rotating to another algorithm', () => {
    const dir = tempDir()
    const store = new KeyStore(dir)
    store.ensureJwtKey('ES256', 1000)
    const prepared = store.prepareNextJwtKey('ES256', 1000)
    olderBinaryRotate(dir, 2000, 500)
    expect(olderBinarySigner(dir)).toBe(prepared.kid)
    store.rotateJwtKey('RS256', 2100, 500)
    // Tokens it signed until 2100 live at most 500 s (the retention the rotation was given).
    expect(store.loadAsymmetricKeys(2599).jwks.map((k) => k.kid)).toContain(prepared.kid)
  })

  it('never makes a key an older binary retired active again, and signs with the key it reports', () => {
    const dir = tempDir()
    const store = new KeyStore(dir)
    store.ensureJwtKey('ES256', 1000)
    const prepared = store.prepareNextJwtKey('ES256', 1000)
    olderBinaryRotate(dir, 2000, 500)
    olderBinaryRotate(dir, 3000, 500)
    const unretired = store.readKeyring().filter((k) => k.retired === undefined).map((k) => k.kid)
    expect(unretired).toHaveLength(2)
    // The older binary retired the prepared key: it is shown as retired, not as the next key.
    expect(keyStatus(store, 'broker1', 3000).scitoken.find((k) => k.kid === prepared.kid)?.status).toBe('retired')
    const r = store.rotateJwtKey('ES256', 3100, 500)
    expect(r.active.kid).not.toBe(prepared.kid)
    const after = store.loadAsymmetricKeys(3100)
    expect(after.active.kid).toBe(r.active.kid)
    // Both keys the older binary left unretired may have signed: published at least 500 s more.
    for (const kid of unretired) expect(store.loadAsymmetricKeys(3599).jwks.map((k) => k.kid)).toContain(kid)
  })

  // The older binary's second rotation retires the prepared key but leaves its `next` flag (a field it does
  // not know): that entry is retired, and a start-up must prepare a fresh next key, not report it as one.
  it('prepares a fresh next key when an older binary has retired the prepared one', () => {
    const dir = tempDir()
    const store = new KeyStore(dir)
    store.ensureJwtKey('ES256', 1000)
    const prepared = store.prepareNextJwtKey('ES256', 1000)
    olderBinaryRotate(dir, 2000, 500)
    olderBinaryRotate(dir, 3000, 500)
    const next = store.prepareNextJwtKey('ES256', 3100)
    expect(next.kid).not.toBe(prepared.kid)
    expect(next.retired).toBeUndefined()
    expect(keyStatus(store, 'broker1', 3100).scitoken.find((k) => k.kid === next.kid)?.status).toBe('next')
  })

  it('publishes public members only', () => {
    const store = new KeyStore(tempDir())
    store.ensureJwtKey('RS256', 1)
    const { jwks } = store.loadAsymmetricKeys(1)
    for (const k of jwks) for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(k).not.toHaveProperty(secret)
  })

  it('names the key file that does not parse (a half-written PEM), not only OpenSSL\'s decoder', () => {
    const dir = tempDir()
    const store = new KeyStore(dir)
    store.ensureJwtKey('ES256', 1000)
    const next = store.prepareNextJwtKey('ES256', 1000)
    const file = join(dir, 'jwt', `${next.kid}.pem`)
    writeFileSync(file, readFileSync(file).subarray(0, 100), { mode: 0o600 })
    expect(() => store.loadAsymmetricKeys(1100)).toThrow(`key ${next.kid}.pem is not a PEM private key`)
  })

  it('writes private keys with mode 0600', () => {
    const dir = tempDir()
    const store = new KeyStore(dir)
    const { entry } = store.ensureJwtKey('ES256', 1)
    expect(statSync(join(dir, 'jwt', `${entry.kid}.pem`)).mode & 0o777).toBe(0o600)
  })
})

/** What `keys rotate` did before next keys existed: retire the first unretired entry, append a fresh key. */
function olderBinaryRotate(dir: string, now: number, retainSeconds: number): void {
  const file = join(dir, 'jwt', 'keyring.json')
  const ring = (JSON.parse(readFileSync(file, 'utf8')) as { keys: Array<Record<string, unknown>> }).keys
    .filter((k) => k.publish_until === undefined || (k.publish_until as number) > now)
  const current = ring.find((k) => k.retired === undefined)
  if (current) Object.assign(current, { retired: now, publish_until: now + retainSeconds })
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const kid = jwkThumbprint(createPublicKey(privateKey))
  writeFileSync(join(dir, 'jwt', `${kid}.pem`), privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o600 })
  writeFileSync(file, JSON.stringify({ keys: [...ring, { kid, alg: 'ES256', created: now }] }), { mode: 0o600 })
}

/** The kid a binary from before next keys signs with: the first entry without `retired`. */
function olderBinarySigner(dir: string): string | undefined {
  const ring = (JSON.parse(readFileSync(join(dir, 'jwt', 'keyring.json'), 'utf8')) as { keys: Array<{ kid: string; retired?: number }> }).keys
  return ring.find((k) => k.retired === undefined)?.kid
}

// An operator reading the console's key table after `keys rotate --compromised` must tell the stolen
// keys from ones that merely expired: those are pruned at the next rotation, these stay marked for good.
describe('keyStatus after a compromise rotation', () => {
  it('shows the unpublished keys as compromised, not expired', () => {
    const store = new KeyStore(join(tempDir(), 'keys'))
    const stolen = store.ensureJwtKey('ES256', 1000).entry.kid
    const r = store.rotateCompromised('ES256', 2000)
    expect(r.unpublished).toEqual([stolen])
    const status = keyStatus(store, 'broker1', 2001).scitoken
    expect(status.find((k) => k.kid === stolen)?.status).toBe('compromised')
    expect(status.find((k) => k.kid === r.active.kid)?.status).toBe('active')
  })
})
