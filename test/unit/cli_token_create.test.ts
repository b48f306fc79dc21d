import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import { scramble } from '../../src/keys/condor_key_file.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// `token create` with the broker's keys is an issuance like POST /token: same scope checks, same caps,
// audited before the token is shown. Defaults: idtoken.max_lifetime 7 d, scitoken.max_lifetime 6 h.
const TD = 'pool.example.org'
const AUD = 'condor://ap.example.org:9618'

async function setup(): Promise<NodeJS.ProcessEnv> {
  const e = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: TD }
  expect((await cli(['keys', 'init'], e)).code).toBe(0)
  return e
}

function payload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
}

async function issuedRecords(e: NodeJS.ProcessEnv): Promise<Record<string, unknown>[]> {
  const r = await cli(['audit', 'list', '--type', 'token.issued', '--json'], e)
  expect(r.code, r.err).toBe(0)
  return r.out.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { event: Record<string, unknown> }).event)
}

const sci = (...rest: string[]) => ['token', 'create', '--scitoken', '--sub', 'alice', ...rest]
const id = (identity: string, ...rest: string[]) => ['token', 'create', '--identity', identity, ...rest]

describe('token create with the broker keys refuses what policy would', () => {
  it.each([
    ['root with ADMINISTRATOR until 2030', id(`root@${TD}`, '--authz', 'ADMINISTRATOR', '--lifetime', '150000000'), /ADMINISTRATOR is a privileged HTCondor level.*--allow-privileged ADMINISTRATOR/],
    ['a user with ADMINISTRATOR', id(`alice@${TD}`, '--authz', 'READ', '--authz', 'ADMINISTRATOR'), /--allow-privileged ADMINISTRATOR/],
    ['condor@ with DAEMON', id(`condor@${TD}`, '--authz', 'DAEMON'), /DAEMON is a privileged HTCondor level.*--allow-privileged DAEMON/],
    ['NEGOTIATOR', id(`neg@${TD}`, '--authz', 'NEGOTIATOR'), /--allow-privileged NEGOTIATOR/],
    ['CONFIG', id(`cfg@${TD}`, '--authz', 'condor:/config'), /--allow-privileged CONFIG/],
    ['a second privileged level not named', id(`adm@${TD}`, '--authz', 'ADMINISTRATOR,DAEMON', '--allow-privileged', 'ADMINISTRATOR'), /DAEMON is a privileged/],
    ['condor@ with READ', id(`condor@${TD}`, '--authz', 'READ'), /identity condor@pool.example.org is reserved.*--allow-reserved-identity condor/],
    ['root@ with READ', id(`ROOT@${TD}`, '--authz', 'READ'), /--allow-reserved-identity root/],
    ['condor_pool@', id(`condor_pool@${TD}`, '--authz', 'READ'), /--allow-reserved-identity condor_pool/],
    ['an IDTOKEN above idtoken.max_lifetime', id(`alice@${TD}`, '--authz', 'READ', '--lifetime', String(7 * 86400 + 1)), /lifetime 604801s exceeds idtoken.max_lifetime \(604800s\)/],
    ['the SciToken ANY audience', sci('--aud', 'ANY', '--scope', 'compute.read'), /audience 'ANY' is accepted by every service.*--allow-any-audience/],
    ['the WLCG any audience', sci('--aud', 'https://wlcg.cern.ch/jwt/v1/any', '--scope', 'compute.read'), /--allow-any-audience/],
    ['storage.read without a path', sci('--aud', AUD, '--scope', 'storage.read'), /storage scope 'storage.read' needs an absolute path, e.g. storage.read:\/data$/],
    ['a relative storage path', sci('--aud', AUD, '--scope', 'storage.read:data/x'), /needs an absolute path, e.g. storage.read:\/data\/x$/],
    ['a .. storage path', sci('--aud', AUD, '--scope', 'storage.modify:/data/../etc'), /must be absolute and normalised/],
    ['a . storage path', sci('--aud', AUD, '--scope', 'storage.read:/data/./x'), /must be absolute and normalised/],
    ['an unknown storage operation', sci('--aud', AUD, '--scope', 'storage.delete:/data'), /unknown storage scope 'storage.delete'/],
    ['offline_access', sci('--aud', AUD, '--scope', 'compute.read offline_access'), /never issued/],
    ['a SciToken with condor:/ADMINISTRATOR', sci('--aud', AUD, '--scope', 'condor:/READ condor:/ADMINISTRATOR'), /--allow-privileged ADMINISTRATOR/],
    ['a SciToken above scitoken.max_lifetime', sci('--aud', AUD, '--scope', 'compute.read', '--lifetime', String(6 * 3600 + 1)), /exceeds scitoken.max_lifetime \(21600s\)/],
    ['the admin role', id(`alice@${TD}`, '--authz', 'READ', '--role', 'admin'), /role admin opens the admin API only/],
    ['a role that is no role name', id(`alice@${TD}`, '--authz', 'READ', '--role', 'Bad"Role'), /role 'Bad\?Role' must be lower-case/],
    ['WRITE on role pilot', id(`pilot@${TD}`, '--authz', 'READ,WRITE', '--role', 'pilot'), /WRITE \(or a level or scopes implying it\) on role pilot is direct attach.*pass --allow-direct-attach to mint it for role pilot anyway$/],
    ['WRITE on role startd-gpu', id(`s@${TD}`, '--authz', 'WRITE', '--role', 'startd-gpu'), /on role startd-gpu is direct attach/],
    ['a SciToken whose compute.* scopes give WRITE on role annex-pilot', sci('--aud', AUD, '--scope', 'compute.read compute.create compute.modify compute.cancel', '--role', 'annex-pilot'), /on role annex-pilot is direct attach/],
    ['a SciToken with condor:/WRITE on role pilot', sci('--aud', AUD, '--scope', 'condor:/WRITE', '--role', 'pilot'), /on role pilot is direct attach/],
    ['--allow-direct-attach on a role that is no pilot or startd', id(`alice@${TD}`, '--authz', 'WRITE', '--allow-direct-attach'), /direct attach applies only to pilot and startd roles, not cli/],
    ['a 304-character identity', id(`${'a'.repeat(287)}@${TD}`, '--authz', 'READ'), /the identity is 304 characters long; at most 255 are issued/],
    ['a 256-character SciToken subject', ['token', 'create', '--scitoken', '--sub', 'x'.repeat(256), '--aud', AUD, '--scope', 'compute.read'], /the identity is 256 characters long; at most 255 are issued/],
    ['condor@ named but under role cli', id(`condor@${TD}`, '--authz', 'READ', '--allow-reserved-identity', 'condor'), /only role central-manager may carry it; pass --role central-manager and --allow-reserved-identity condor to mint it anyway$/],
    ['root@ named but under role cli', id(`root@${TD}`, '--authz', 'READ', '--allow-reserved-identity', 'root'), /only role central-manager may carry it/],
    ['condor@ under role central-manager but not named', id(`condor@${TD}`, '--authz', 'READ', '--role', 'central-manager'), /is reserved: .* as a daemon or administrator; pass --allow-reserved-identity condor to mint it anyway$/],
  ])('refuses %s in one line, writes no token and audits nothing', async (_name, args, message) => {
    const e = await setup()
    const out = join(tempDir(), 'token')
    const r = await cli([...args, '--file', out], e)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(message)
    expect(r.err.split('\n')).toHaveLength(1)
    expect(r.out).toBe('')
    expect(existsSync(out)).toBe(false)
    expect(await issuedRecords(e)).toEqual([])
  })

  it.each([
    [id(`a@${TD}`, '--authz', 'READ', '--allow-privileged', 'READ'), /--allow-privileged takes privileged levels \(ADMINISTRATOR, CONFIG, DAEMON, NEGOTIATOR\), not "READ"/],
    [id(`a@${TD}`, '--authz', 'READ', '--allow-reserved-identity', 'alice'), /--allow-reserved-identity takes reserved user names/],
    [id(`a@${TD}`, '--authz', 'READ', '--trust-domain', 'other.example.org'), /sign for trust domain pool.example.org only; use --key-file/],
  ])('%j is a usage error', async (args, message) => {
    const e = await setup()
    const r = await cli(args, e)
    expect(r.code).toBe(2)
    expect(r.err).toMatch(message)
    expect(r.err.split('\n')).toHaveLength(1)
  })
})

describe('token create with explicit permissions', () => {
  it('mints root@ with ADMINISTRATOR when both are named under role central-manager, and audits it with what was allowed', async () => {
    const e = await setup()
    const r = await cli(id(`root@${TD}`, '--authz', 'ADMINISTRATOR', '--allow-privileged', 'ADMINISTRATOR', '--allow-reserved-identity', 'root', '--role', 'central-manager', '--lifetime', '3600'), e)
    expect(r.code, r.err).toBe(0)
    const claims = payload(r.out)
    expect(claims).toMatchObject({ iss: TD, sub: `root@${TD}`, scope: 'condor:/ADMINISTRATOR', ctb_role: 'central-manager', ctb_gen: 1 })
    expect(claims.exp as number - (claims.iat as number)).toBe(3600)
    const [rec, ...more] = await issuedRecords(e)
    expect(more).toEqual([])
    expect(rec).toMatchObject({
      type: 'token.issued', decision: 'allow', role: 'central-manager', tokenKind: 'idtoken', issuedSub: `root@${TD}`, jti: claims.jti, exp: claims.exp,
      scopes: ['condor:/ADMINISTRATOR'], policyRule: 'cli (privileged=ADMINISTRATOR; reserved_user=root)',
      caller: { iss: 'cli', sub: `cli:${userInfo().username}` },
      tokenSha256: createHash('sha256').update(r.out).digest('hex'),
    })
    expect((await cli(['audit', 'verify'], e)).code).toBe(0)
  })

  it('mints condor@ with DAEMON under a named role, comma lists and repeated flags alike', async () => {
    const e = await setup()
    const r = await cli(id(`condor@${TD}`, '--authz', 'DAEMON', '--authz', 'NEGOTIATOR,ADMINISTRATOR', '--allow-privileged', 'DAEMON,NEGOTIATOR', '--allow-privileged', 'ADMINISTRATOR', '--allow-reserved-identity', 'condor', '--role', 'central-manager'), e)
    expect(r.code, r.err).toBe(0)
    expect(payload(r.out)).toMatchObject({ sub: `condor@${TD}`, scope: 'condor:/DAEMON condor:/NEGOTIATOR condor:/ADMINISTRATOR', ctb_role: 'central-manager' })
    expect((await issuedRecords(e))[0]).toMatchObject({ role: 'central-manager', policyRule: 'cli (privileged=DAEMON,NEGOTIATOR,ADMINISTRATOR; reserved_user=condor)' })
  })

  it('mints WRITE on a pilot role with --allow-direct-attach, and an identity of exactly 255 characters', async () => {
    const e = await setup()
    const pilot = await cli(id(`pilot@${TD}`, '--authz', 'READ,WRITE,ADVERTISE_STARTD', '--role', 'pilot', '--allow-direct-attach'), e)
    expect(pilot.code, pilot.err).toBe(0)
    expect(payload(pilot.out)).toMatchObject({ sub: `pilot@${TD}`, scope: 'condor:/READ condor:/WRITE condor:/ADVERTISE_STARTD', ctb_role: 'pilot' })
    const advertise = await cli(id(`startd@${TD}`, '--authz', 'READ,ADVERTISE_STARTD', '--role', 'startd'), e)
    expect(advertise.code, advertise.err).toBe(0)
    const long = `${'u'.repeat(255 - 1 - TD.length)}@${TD}`
    expect(long).toHaveLength(255)
    const r = await cli(id(long, '--authz', 'READ'), e)
    expect(r.code, r.err).toBe(0)
    expect(payload(r.out)).toMatchObject({ sub: long })
    expect((await issuedRecords(e)).map((x) => [x.role, x.policyRule])).toEqual([['cli', 'cli'], ['startd', 'cli'], ['pilot', 'cli (direct_attach)']])
  })

  it('mints an ANY-audience SciToken with --allow-any-audience, and absolute storage paths without it', async () => {
    const e = await setup()
    const any = await cli(sci('--aud', 'ANY', '--scope', 'compute.read', '--allow-any-audience'), e)
    expect(any.code, any.err).toBe(0)
    expect(payload(any.out)).toMatchObject({ aud: 'ANY', ctb_role: 'cli', ctb_gen: 1 })
    const storage = await cli(sci('--aud', 'https://se.example.org', '--scope', 'storage.read:/data/atlas storage.create:/', '--lifetime', String(6 * 3600)), e)
    expect(storage.code, storage.err).toBe(0)
    expect(payload(storage.out)).toMatchObject({ scope: 'storage.read:/data/atlas storage.create:/' })
    const recs = await issuedRecords(e)
    expect(recs.map((r) => r.policyRule)).toEqual(['cli', 'cli (any_audience)'])
    expect(recs[0]).toMatchObject({ tokenKind: 'scitoken', audience: ['https://se.example.org'], jti: payload(storage.out).jti })
  })

  it('a CLI token is revocable by jti (exp from its audit record) and by role (next token carries the new ctb_gen)', async () => {
    const e = await setup()
    const t = await cli(id(`alice@${TD}`, '--authz', 'READ', '--lifetime', '1000'), e)
    expect(t.code, t.err).toBe(0)
    const { jti, exp } = payload(t.out)
    const byJti = await cli(['revoke', '--jti', String(jti)], e)
    expect(byJti.code, byJti.err).toBe(0)
    expect(byJti.out).toContain(`listed until ${new Date((exp as number) * 1000).toISOString().replace('.000Z', 'Z')}`)
    expect((await cli(['revoke', '--role', 'cli'], e)).code).toBe(0)
    const next = await cli(id(`alice@${TD}`, '--authz', 'READ'), e)
    expect(payload(next.out)).toMatchObject({ ctb_role: 'cli', ctb_gen: 2 })
  })

  it('a revoked identity gets no new token from the command line', async () => {
    const e = await setup()
    expect((await cli(id(`alice@${TD}`, '--authz', 'READ'), e)).code).toBe(0)
    const rev = await cli(['revoke', '--sub', `alice@${TD}`], e)
    expect(rev.code, rev.err).toBe(0)
    const again = await cli(id(`alice@${TD}`, '--authz', 'READ'), e)
    expect(again.code).toBe(1)
    expect(again.out).toBe('')
    expect(again.err.trim().split('\n')).toHaveLength(1)
    expect(again.err).toContain('revoked')
    expect((await cli(id(`bob@${TD}`, '--authz', 'READ'), e)).code).toBe(0)
  })
})

describe('token create fails closed on the audit store', () => {
  it('prints and writes no token when the audit record cannot be committed', async () => {
    const e = await setup()
    expect((await cli(id(`alice@${TD}`, '--authz', 'READ'), e)).code).toBe(0)
    // The store opens and reads fine; only the commit of the new record fails.
    const db = new DatabaseSync(join(e.CTB_DATA_DIR!, 'audit.db'))
    db.exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END`)
    db.close()
    const out = join(tempDir(), 'token')
    const r = await cli(id(`alice@${TD}`, '--authz', 'READ', '--file', out), e)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^condor-token-broker: no token issued: its audit record could not be committed: .*disk quota exceeded/)
    expect(r.err.split('\n')).toHaveLength(1)
    expect(r.out).toBe('')
    expect(existsSync(out)).toBe(false)
  })

  it('prints no token when the audit store cannot be opened', async () => {
    const e = await setup()
    writeFileSync(join(e.CTB_DATA_DIR!, 'audit.db'), 'this is not an SQLite database, it is long enough to have a header'.repeat(20))
    const r = await cli(sci('--aud', AUD, '--scope', 'compute.read'), e)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^condor-token-broker: no token issued: cannot open the audit store: /)
    expect(r.err.split('\n')).toHaveLength(1)
    expect(r.out).toBe('')
  })
})

describe('token create --key-file', () => {
  it('still mints anything, as condor_token_create does, and says on stderr that it is unaudited', async () => {
    const e = await setup()
    const keyFile = join(tempDir(), 'POOL')
    writeFileSync(keyFile, scramble(Buffer.alloc(64, 7)), { mode: 0o600 })
    const r = await cli(id('condor@td', '--authz', 'DAEMON', '--lifetime', '150000000', '--key-file', keyFile, '--trust-domain', 'td'), e)
    expect(r.code, r.err).toBe(0)
    expect(r.err).toBe(`warning: signed with --key-file ${keyFile}: this token is not audited and not subject to broker policy`)
    expect(payload(r.out)).toMatchObject({ iss: 'td', sub: 'condor@td', scope: 'condor:/DAEMON' })
    expect(payload(r.out)).not.toHaveProperty('ctb_role')
    expect(await issuedRecords(e)).toEqual([])
    const flags = await cli(id('a@td', '--authz', 'READ', '--key-file', keyFile, '--role', 'x'), e)
    expect(flags.code).toBe(2)
    expect(flags.err).toMatch(/--role and --allow-\* apply to tokens signed with the broker's keys/)
  })
})

describe('token create --key-file refuses the broker\'s own keys', () => {
  const REFUSAL = /^condor-token-broker: --key-file .* is (.*); drop --key-file so the token is minted with the broker's keys, checked and audited$/
  const copy = (from: string, to: string) => { writeFileSync(to, readFileSync(from), { mode: 0o600 }); return to }
  // Each case returns the --key-file to try and, optionally, extra flags; the broker was set up by keys init.
  const cases: [string, (data: string) => Promise<{ file: string; flags?: string[] }> | { file: string; flags?: string[] }, string][] = [
    ['its signing key by path', (data) => ({ file: join(data, 'keys', 'condor', 'broker1') }), `a file in the broker's key store`],
    ['its signing key through ..', (data) => ({ file: join(data, 'keys', 'jwt', '..', 'condor', 'broker1') }), `a file in the broker's key store`],
    ['its signing key through a symlink', (data) => { const l = join(tempDir(), 'k'); symlinkSync(join(data, 'keys', 'condor', 'broker1'), l); return { file: l } }, `a file in the broker's key store`],
    ['a copy of its signing key', (data) => ({ file: copy(join(data, 'keys', 'condor', 'broker1'), join(tempDir(), 'other')) }), `a copy of the broker's HTCondor key broker1`],
    ['a copy of its signing key, with --key naming it', (data) => ({ file: copy(join(data, 'keys', 'condor', 'broker1'), join(tempDir(), 'other')), flags: ['--key', 'broker1'] }), `a copy of the broker's HTCondor key broker1`],
    ['the original of an imported POOL key', async (data) => {
      const pool = join(tempDir(), 'POOL')
      writeFileSync(pool, scramble(Buffer.alloc(64, 9)), { mode: 0o600 })
      expect((await cli(['keys', 'import', pool], { CTB_DATA_DIR: data, CTB_TRUST_DOMAIN: TD })).code).toBe(0)
      return { file: pool }
    }, `a copy of the broker's HTCondor key POOL`],
    ['other bytes deriving the signing key of an imported POOL key', async (data) => {
      const pool = join(tempDir(), 'POOL')
      const raw = Buffer.alloc(64, 9)
      writeFileSync(pool, scramble(raw), { mode: 0o600 })
      expect((await cli(['keys', 'import', pool], { CTB_DATA_DIR: data, CTB_TRUST_DOMAIN: TD })).code).toBe(0)
      // POOL signs with HKDF(key‖key); a named key signs with HKDF(its own bytes): key‖key named "twice" signs alike.
      const twice = join(tempDir(), 'twice')
      writeFileSync(twice, scramble(Buffer.concat([raw, raw])), { mode: 0o600 })
      return { file: twice }
    }, `the broker's HTCondor key POOL under another name`],
    ['a copy of its SciToken key', (data) => {
      const jwt = join(data, 'keys', 'jwt')
      const pem = readdirSync(jwt).find((n) => n.endsWith('.pem'))!
      return { file: copy(join(jwt, pem), join(tempDir(), 'k.pem')) }
    }, `a copy of the broker's SciToken key`],
  ]
  it.each(cases)('%s: one line, exit 1, no token, no audit record', async (_name, make, what) => {
    const e = await setup()
    const { file, flags = [] } = await make(e.CTB_DATA_DIR!)
    const r = await cli(id(`condor@${TD}`, '--authz', 'ADMINISTRATOR,CONFIG', '--lifetime', '999999999', '--key-file', file, ...flags), e)
    expect(r.code).toBe(1)
    expect(r.out).toBe('')
    expect(r.err.split('\n')).toHaveLength(1)
    expect(r.err).toMatch(REFUSAL)
    expect(r.err.match(REFUSAL)![1]).toContain(what)
    expect(await issuedRecords(e)).toEqual([])
  })
})

describe('token create --file checks the output before anything is minted', () => {
  const cases: [string, () => { file: string; dir: string }, RegExp][] = [
    ['an existing directory', () => { const dir = tempDir(); mkdirSync(join(dir, 'somedir')); return { file: join(dir, 'somedir'), dir } }, /no token issued: --file .*somedir is a directory; name a file in it$/],
    ['a file in a directory that does not exist', () => { const dir = tempDir(); return { file: join(dir, 'nonexistent', 'dir', 'tok'), dir } }, /no token issued: --file .*tok: directory .*nonexistent\/dir does not exist$/],
  ]
  it.each(cases)('%s: one line, exit 1, no audit record, nothing left on disk', async (_name, where, message) => {
    const e = await setup()
    const { file, dir } = where()
    const before = readdirSync(dir, { recursive: true })
    const r = await cli(id(`alice@${TD}`, '--authz', 'READ', '--file', file), e)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(message)
    expect(r.err.split('\n')).toHaveLength(1)
    expect(r.out).toBe('')
    expect(await issuedRecords(e)).toEqual([])
    expect(readdirSync(dir, { recursive: true })).toEqual(before)
  })

  it('a file system that takes no new files (/proc) is refused before minting, not an internal error', async () => {
    const e = await setup()
    const r = await cli(sci('--aud', AUD, '--scope', 'compute.read', '--file', '/proc/version'), e)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^condor-token-broker: no token issued: .*\/proc/)
    expect(r.err).not.toContain('internal error')
    expect(r.err.split('\n')).toHaveLength(1)
    expect(await issuedRecords(e)).toEqual([])
  })

  it('--key-file tokens are checked the same way and leave no temp file', async () => {
    const e = await setup()
    const keyFile = join(tempDir(), 'POOL')
    writeFileSync(keyFile, scramble(Buffer.alloc(64, 7)), { mode: 0o600 })
    const dir = tempDir()
    mkdirSync(join(dir, 'somedir'))
    const r = await cli(id('alice@td', '--authz', 'READ', '--key-file', keyFile, '--file', join(dir, 'somedir')), e)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/is a directory; name a file in it$/)
    expect(readdirSync(dir, { recursive: true })).toEqual(['somedir'])
  })

  it('a writable file is replaced with the token and a newline, mode 0600, and nothing else is left', async () => {
    const e = await setup()
    const dir = tempDir()
    const file = join(dir, 'tok')
    writeFileSync(file, 'old\n')
    const r = await cli(id(`alice@${TD}`, '--authz', 'READ', '--file', file), e)
    expect(r.code, r.err).toBe(0)
    expect(readdirSync(dir)).toEqual(['tok'])
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const token = readFileSync(file, 'utf8')
    expect(token.endsWith('\n')).toBe(true)
    expect((await issuedRecords(e))[0]).toMatchObject({ jti: payload(token.trim()).jti })
  })
})
