import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { scramble } from '../../src/keys/condor_key_file.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

/** Every file under `dir` (relative path) with its bytes and mode. */
function snapshot(dir: string): Map<string, { bytes: Buffer; mode: number }> {
  const out = new Map<string, { bytes: Buffer; mode: number }>()
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const st = statSync(join(dir, f))
    if (st.isFile()) out.set(f, { bytes: readFileSync(join(dir, f)), mode: st.mode })
  }
  return out
}

function env(): NodeJS.ProcessEnv {
  return { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
}

describe('condor-token-broker keys', () => {
  it('init creates both keys once, list shows them, rotate keeps the old kid published', async () => {
    const e = env()
    const init = await cli(['keys', 'init'], e)
    expect(init.code).toBe(0)
    expect(init.out).toMatch(/HTCondor key broker1: created/)
    const kid1 = /kid=(\S+)/.exec(init.out)![1]!
    // The audit MAC key too (docs/audit.md): 32 random bytes, base64, owner-only, never replaced.
    const macFile = join(e.CTB_DATA_DIR!, 'keys', 'audit_mac.key')
    expect(init.out).toContain(`audit MAC key: created ${macFile} key id `)
    expect(Buffer.from(readFileSync(macFile, 'utf8').trim(), 'base64')).toHaveLength(32)
    expect(statSync(macFile).mode & 0o777).toBe(0o600)
    const macKey = readFileSync(macFile, 'utf8')
    expect((await cli(['keys', 'init'], e)).out).toMatch(/broker1: exists[\s\S]*SciToken key: exists[\s\S]*audit MAC key: exists at /)
    expect(readFileSync(macFile, 'utf8')).toBe(macKey)
    const rot = await cli(['keys', 'rotate'], e)
    expect(rot.code).toBe(0)
    expect(rot.out).toContain(`retired kid=${kid1}`)
    expect(rot.out).toMatch(/recorded in the audit log/)
    const audited = await cli(['audit', 'list', '--type', 'key.rotated', '--json'], e)
    expect(audited.code, audited.err).toBe(0)
    const rec = JSON.parse(audited.out.split('\n')[0]!)
    expect(JSON.stringify(rec)).toContain(kid1)
    const list = await cli(['keys', 'list'], e)
    expect(list.out).toMatch(/broker1 {2}64 bytes {2}mode 0600/)
    expect(list.out).toMatch(new RegExp(`${kid1} {2}ES256 .* retired, published until`))
  })

  it('init on a data directory from before audit MACs creates the MAC key and leaves every other key file as it was', async () => {
    const e = env()
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const keys = join(e.CTB_DATA_DIR!, 'keys')
    rmSync(join(keys, 'audit_mac.key'))
    const before = snapshot(keys)
    const init = await cli(['keys', 'init'], e)
    expect(init.code).toBe(0)
    expect(init.out).toMatch(/broker1: exists[\s\S]*SciToken key: exists[\s\S]*audit MAC key: created /)
    const after = snapshot(keys)
    expect([...after.keys()].filter((f) => !before.has(f))).toEqual(['audit_mac.key'])
    for (const [f, bytes] of before) expect(after.get(f), f).toEqual(bytes)
  })

  // A kid verifiers have not fetched is refused by scitokens-cpp until its 600 s key-set refresh
  // (docs/htcondor-tokens.md §5.3): init publishes the next key, and rotate signs with it.
  it('init publishes the next key, and rotate makes exactly that one active', async () => {
    const e = env()
    const init = await cli(['keys', 'init'], e)
    const next = /next kid=(\S+)/.exec(init.out)?.[1]
    expect(next, init.out).toBeDefined()
    expect((await cli(['keys', 'list'], e)).out).toMatch(new RegExp(`${next} {2}ES256 .* next, published`))
    const rot = await cli(['keys', 'rotate'], e)
    expect(rot.code).toBe(0)
    expect(rot.out).toContain(`new active kid=${next}`)
    expect(rot.out).toMatch(/next kid=\S+/)
    expect(rot.out).not.toContain(`next kid=${next}`)
  })

  // The next key that keys init makes beside the first signing key was in every /jwks ever served, so no
  // verifier can hold a key set without it: rotating at once is safe and warns of nothing (README, keys rotate).
  it('rotate right after init signs with the next key without warning that verifiers lack it', async () => {
    const e = env()
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const rot = await cli(['keys', 'rotate'], e)
    expect(rot.code, rot.err).toBe(0)
    expect(rot.err).toBe('')
  })

  // scitokens-cpp answers "Key ID is not published by the issuer" for a kid missing from the key set it
  // fetched, until its 600 s refresh (test/interop/scitokens_rotation_cache.test.ts). So rotate never
  // signs with a key published less than that long unless told to (--force, an emergency): without a
  // published key of the algorithm it publishes one and keeps signing with the key in force.
  it('rotate publishes a key first, refuses one published too recently, and --force overrides', async () => {
    const e = env()
    const store = join(e.CTB_DATA_DIR!, 'keys')
    mkdirSync(store, { recursive: true })
    // A keyring from before next keys: one signing key, none prepared.
    const { KeyStore } = await import('../../src/keys/key_store.ts')
    const ks = new KeyStore(store)
    const signing = ks.ensureJwtKey('ES256', Math.floor(Date.now() / 1000) - 3600).entry.kid
    const signingKid = () => ks.loadAsymmetricKeys(Math.floor(Date.now() / 1000)).active.kid

    const first = await cli(['keys', 'rotate'], e)
    expect(first.code, first.err).toBe(0)
    expect(signingKid()).toBe(signing)
    const published = /published kid=(\S+)/.exec(first.out)?.[1]
    expect(published, first.out).toBeDefined()
    expect(ks.loadAsymmetricKeys(Math.floor(Date.now() / 1000)).jwks.map((k) => k.kid)).toContain(published)
    expect(first.out).toMatch(/run "keys rotate" again after \d{4}-\d\d-\d\dT/)

    const soon = await cli(['keys', 'rotate'], e)
    expect(soon.code).toBe(1)
    expect(soon.err).toMatch(new RegExp(`kid ${published} is in /jwks only since .*--force`))
    // --force alone leaves a stolen key published for days; the refusal must not send that admin there.
    expect(soon.err).toMatch(/a stolen key: --compromised/)
    expect(signingKid()).toBe(signing)

    const forced = await cli(['keys', 'rotate', '--force'], e)
    expect(forced.code, forced.err).toBe(0)
    expect(forced.err).toMatch(/warning: .*in \/jwks only since/)
    expect(signingKid()).toBe(published)
  })

  it('rotate --alg to an algorithm with no published key publishes one and keeps signing', async () => {
    const e = env()
    expect((await cli(['keys', 'init'], e)).code).toBe(0)
    const { KeyStore } = await import('../../src/keys/key_store.ts')
    const ks = new KeyStore(join(e.CTB_DATA_DIR!, 'keys'))
    const before = ks.loadAsymmetricKeys(Math.floor(Date.now() / 1000)).active
    const rot = await cli(['keys', 'rotate', '--alg', 'RS256'], e)
    expect(rot.code, rot.err).toBe(0)
    const after = ks.loadAsymmetricKeys(Math.floor(Date.now() / 1000))
    expect(after.active.kid).toBe(before.kid)
    expect(after.jwks.filter((k) => k.alg === 'RS256')).toHaveLength(1)
    expect(rot.out).toContain(`published kid=${after.jwks.find((k) => k.alg === 'RS256')!.kid} alg=RS256`)
  })

  it('imports a pool key that then signs tokens', async () => {
    const e = env()
    const f = join(tempDir(), 'POOL')
    writeFileSync(f, scramble(Buffer.alloc(64, 3)), { mode: 0o600 })
    expect((await cli(['keys', 'import', f], e)).code).toBe(0)
    const t = await cli(['token', 'create', '--identity', 'a@pool.example.org', '--authz', 'READ', '--key', 'POOL'], e)
    expect(t.code).toBe(0)
    expect(JSON.parse(Buffer.from(t.out.split('.')[0]!, 'base64url').toString())).toEqual({ alg: 'HS256', kid: 'POOL' })
  })
})

describe('condor-token-broker token create / inspect', () => {
  it('writes the token as HTCondor does: token + newline, mode 0600', async () => {
    const e = env()
    await cli(['keys', 'init'], e)
    // The tokens.d directory is the admin's to create: a missing directory is refused, not made.
    const dir = join(tempDir(), 'tokens.d')
    mkdirSync(dir, { mode: 0o700 })
    const out = join(dir, 'startd')
    const r = await cli(['token', 'create', '--identity', 'startd-1@eps.pool.example.org', '--authz', 'READ', '--authz', 'ADVERTISE_STARTD', '--lifetime', '3600', '--file', out], e)
    expect(r.code).toBe(0)
    const text = readFileSync(out, 'utf8')
    expect(text).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/)
    expect(statSync(out).mode & 0o777).toBe(0o600)
    const ins = await cli(['token', 'inspect', '--file', out], e)
    expect(ins.code).toBe(0)
    expect(ins.out).toMatch(/signature: valid/)
    expect(ins.out).toMatch(/verdict: {3}would be accepted/)
  })

  // HTCondor verifies HS256, HS384 and HS512 only (docs/htcondor-tokens.md §1.2); an alg named like a
  // property every object has is just another unknown one, reported in a line, not a crash.
  it.each(['toString', 'constructor', '__proto__'])('inspect reports alg %s as unknown', async (alg) => {
    const e = env()
    await cli(['keys', 'init'], e)
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
    const now = Math.floor(Date.now() / 1000)
    const token = `${b64({ alg, kid: 'broker1' })}.${b64({ iss: 'pool.example.org', sub: 'a@pool.example.org', iat: now, exp: now + 60, jti: 'j' })}.c2ln`
    const file = join(tempDir(), 'tok')
    writeFileSync(file, `${token}\n`, { mode: 0o600 })
    const ins = await cli(['token', 'inspect', '--file', file], e)
    expect(`${ins.out}${ins.err}`).toContain(`algorithm "${alg}" is accepted by neither HTCondor nor scitokens-cpp`)
  })

  it('mints with an explicit --key-file and --trust-domain, as condor_token_create does', async () => {
    const e = env()
    const keyFile = join(tempDir(), 'key1')
    writeFileSync(keyFile, scramble(Buffer.from(Array.from({ length: 64 }, (_, i) => i))), { mode: 0o600 })
    const r = await cli(['token', 'create', '--identity', 'condor@td', '--authz', 'READ', '--key-file', keyFile, '--trust-domain', 'td'], e)
    expect(r.code).toBe(0)
    const ins = await cli(['token', 'inspect', r.out, '--key-file', keyFile, '--trust-domain', 'td'], e)
    expect(ins.out).toMatch(/signature: valid \(key file/)
    expect(ins.code).toBe(0)
  })

  it('inspect names why a token would be refused', async () => {
    const e = env()
    await cli(['keys', 'init'], e)
    const t = (await cli(['token', 'create', '--identity', 'a@pool.example.org', '--authz', 'READ'], e)).out
    const wrongTd = await cli(['token', 'inspect', t, '--trust-domain', 'other.org'], e)
    expect(wrongTd.code).toBe(1)
    expect(wrongTd.out).toMatch(/REFUSED: {3}iss "pool.example.org" differs from trust domain "other.org"/)
    const wrongKid = await cli(['token', 'inspect', t, '--issuer-keys', 'POOL'], e)
    expect(wrongKid.out).toMatch(/kid "broker1" is not among the server's IssuerKeys/)
    const [h, p] = t.split('.')
    const tampered = `${h}.${p}.${'A'.repeat(43)}`
    const bad = await cli(['token', 'inspect', tampered], e)
    expect(bad.code).toBe(1)
    expect(bad.out).toMatch(/signature does not verify/)
    const expiredPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), exp: 1000 })).toString('base64url')
    expect((await cli(['token', 'inspect', `${h}.${expiredPayload}.x`], e)).out).toMatch(/REFUSED: {3}expired at 1970/)
  })

  it('mints and inspects a SciToken and a WLCG token', async () => {
    const e = env()
    await cli(['keys', 'init'], e)
    for (const profile of ['wlcg', 'scitokens2']) {
      const t = await cli(['token', 'create', '--scitoken', '--sub', 'alice', '--aud', 'condor://ap.example.org:9618', '--scope', 'condor:/READ condor:/WRITE', '--profile', profile], e)
      expect(t.code).toBe(0)
      const ins = await cli(['token', 'inspect', t.out, '--json'], e)
      const report = JSON.parse(ins.out)
      expect(report).toMatchObject({ kind: 'scitoken', accepted: true, problems: [] })
      expect(report.payload[profile === 'wlcg' ? 'wlcg.ver' : 'ver']).toBe(profile === 'wlcg' ? '1.0' : 'scitoken:2.0')
    }
  })

  it.each([
    [['token', 'create', '--identity', 'a@b'], /at least one --authz/, 2],
    [['token', 'create', '--identity', 'a@b', '--authz', 'OWNER'], /unknown HTCondor authorization level 'OWNER'/, 1],
    [['token', 'create', '--identity', 'nobody', '--authz', 'READ'], /user@domain/, 1],
    [['token', 'create', '--identity', 'a@b', '--authz', 'READ', '--lifetime', '-5'], /--lifetime|lifetime/, 2],
    [['token', 'create', '--identity', 'a@b', '--authz', 'READ', '--trust-domain', 'a b'], /sign for trust domain pool.example.org only/, 2],
    [['token', 'create', '--scitoken', '--sub', 's', '--scope', 'compute.read'], /--aud is required/, 2],
    [['token', 'create', '--nope'], /Unknown option '--nope'/, 2],
    [['token', 'inspect', 'not-a-token'], /not a JWT/, 1],
    [['frobnicate'], /unknown command "frobnicate"/, 2],
  ])('%j fails with one clear line', async (args, message, code) => {
    const e = env()
    await cli(['keys', 'init'], e)
    const r = await cli(args as string[], e)
    expect(r.code).toBe(code)
    expect(`${r.err}\n${r.out}`).toMatch(message as RegExp)
    expect(r.err.split('\n').length).toBeLessThanOrEqual(1)
    expect(r.err).not.toMatch(/at .*:\d+:\d+/)
  })

  it('every command has --help', async () => {
    for (const args of [['--help'], ['keys', '--help'], ['token', '--help'], ['serve', '--help'], ['token', 'create', '--help'], ['keys', 'init', '--help']]) {
      const r = await cli(args, env())
      expect(r.code).toBe(0)
      expect(r.out).toMatch(/Usage|usage/)
    }
  })
})
