import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { getRequestListener } from '@hono/node-server'
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { brokerClient } from '../../src/clients/credmon/client.ts'
import { nodeCredDirFs } from '../../src/clients/credmon/cred_dir.ts'
import { Credmon } from '../../src/clients/credmon/credmon.ts'
import { ensureAuditMacKeyFile } from '../../src/keys/audit_mac_key.ts'
import { systemClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'
import { cli } from '../support/cli.ts'
import { BROKER, useCredentialsApp } from '../support/credentials_app.ts'
import { tempDir } from '../support/tmp.ts'

/**
 * `credential-storer` as HTCondor runs it (SEC_CREDENTIAL_STORER): the service names as arguments, the
 * user's IAM token by WLCG bearer-token discovery, the broker over HTTPS on loopback (the real routes, IAM
 * mocked at its HTTP edge), and a stand-in condor_store_cred on PATH that records what it is handed.
 */
const t = await useCredentialsApp()
let server: Server
let url = ''
let caFile = ''
let tlsDir = ''
const uid = process.getuid?.() ?? 0

beforeAll(async () => {
  tlsDir = mkdtempSync(join(tmpdir(), 'ctb-storer-tls-'))
  const tls = await ensureDevTls(tlsDir)
  caFile = tls.caFile
  server = createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, getRequestListener(t.app.fetch, { overrideGlobalObjects: false }))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `https://localhost:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  rmSync(tlsDir, { recursive: true, force: true })
})

/** A directory with a condor_store_cred that logs its arguments and stdin; `query-oauth` answers `queryExit`. */
function fakeStoreCred(queryExit = 1): { dir: string; log: string } {
  const dir = tempDir()
  const log = join(dir, 'calls.log')
  const script = join(dir, 'condor_store_cred')
  writeFileSync(script, `#!/bin/sh\necho "ARGS $*" >> ${log}\nif [ "$1" = query-oauth ]; then exit ${queryExit}; fi\ncat >> ${log}\n`)
  chmodSync(script, 0o755)
  return { dir, log }
}

async function runtimeDirWithToken(claims: Record<string, unknown>): Promise<string> {
  const dir = tempDir()
  writeFileSync(join(dir, `bt_u${uid}`), `${await t.userToken(claims)}\n`)
  return dir
}

describe('condor-token-broker credential-storer', () => {
  it('finds the token in $XDG_RUNTIME_DIR/bt_u<uid>, registers, and hands the .top to condor_store_cred add-oauth', async () => {
    const fake = fakeStoreCred()
    const env = { PATH: `${fake.dir}:/usr/bin:/bin`, XDG_RUNTIME_DIR: await runtimeDirWithToken({ preferred_username: 'mona' }), CONDOR_TOKEN_BROKER_URL: url, CONDOR_TOKEN_BROKER_CA_FILE: caFile }
    const r = await cli(['credential-storer', 'cms'], env)
    expect(r).toMatchObject({ code: 0, out: '' })
    const lines = readFileSync(fake.log, 'utf8').trim().split('\n')
    expect(lines[0]).toBe('ARGS query-oauth -s cms')
    expect(lines[1]).toBe('ARGS add-oauth -s cms -i -')
    expect(JSON.parse(lines[2]!)).toEqual({ broker_url: BROKER, user: 'mona', provider: 'cms' })
    expect(await t.store.readCredential('mona', 'cms')).toMatchObject({ revoked: false })
  })

  it('passes a handle, scopes and audience as condor_submit gives them, and skips what the credd already holds', async () => {
    const fake = fakeStoreCred()
    const env = { PATH: `${fake.dir}:/usr/bin:/bin`, BEARER_TOKEN: await t.userToken({ preferred_username: 'nick' }), CONDOR_TOKEN_BROKER_URL: url, CONDOR_TOKEN_BROKER_CA_FILE: caFile }
    const r = await cli(['credential-storer', 'cms&handle=read&scopes=compute.read&audience=https://se.example.org'], env)
    expect(r.code).toBe(0)
    const lines = readFileSync(fake.log, 'utf8').trim().split('\n')
    expect(lines[1]).toBe('ARGS add-oauth -s cms_read -S compute.read -A https://se.example.org -i -')
    expect(JSON.parse(lines[2]!)).toEqual({ broker_url: BROKER, user: 'nick', provider: 'cms_read', scopes: 'compute.read', audience: 'https://se.example.org' })
    const held = fakeStoreCred(0)
    const again = await cli(['credential-storer', 'cms'], { ...env, PATH: `${held.dir}:/usr/bin:/bin` })
    expect(again.code).toBe(0)
    expect(readFileSync(held.log, 'utf8').trim()).toBe('ARGS query-oauth -s cms')
  })

  it('prints the .top JSON when condor_store_cred is not there (or with --print), vault mode included', async () => {
    const file = join(tempDir(), 'token')
    writeFileSync(file, await t.userToken({ preferred_username: 'olga' }))
    const r = await cli(['credential-storer', '--print', '--mode', 'vault', '--broker', url, '--ca-file', caFile, 'cms'], { PATH: '/nonexistent', BEARER_TOKEN_FILE: file })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out)).toEqual({ vault_token: expect.any(String), vault_url: 'https://broker.example.org:8200/v1/secret/oauth/creds/olga/cms' })
  })

  it('fails with one line and status 1 when no token is found or the broker refuses, 2 on bad usage', async () => {
    const empty = tempDir()
    const none = await cli(['credential-storer', '--broker', url, 'cms'], { PATH: '/nonexistent', XDG_RUNTIME_DIR: empty })
    expect(none.code).toBe(1)
    expect(none.err).toMatch(/^condor-token-broker: no bearer token: .*bt_u\d+/)
    expect(none.err.split('\n')).toHaveLength(1)
    const refused = await cli(['credential-storer', '--print', '--broker', url, '--ca-file', caFile, 'cms'], { BEARER_TOKEN: await t.userToken({ 'wlcg.groups': ['/other'] }) })
    expect(refused.code).toBe(1)
    expect(refused.err).toMatch(/^condor-token-broker: cms: the broker refused the registration \(403 access_denied/)
    expect((await cli(['credential-storer', '--broker', url, 'bad_name'], { BEARER_TOKEN: 'x' })).code).toBe(2)
    expect((await cli(['credential-storer', '--broker', url, 'cms&scopes=a'], { BEARER_TOKEN: 'x' })).code).toBe(2)
    const http = await cli(['credential-storer', '--print', '--broker', 'http://127.0.0.1:1', 'cms'], { BEARER_TOKEN: 'x' })
    expect(http).toMatchObject({ code: 1, err: 'condor-token-broker: cms: the broker URL must be https, got http' })
  })
})

/** What the stand-in condor_store_cred was handed: the credential name after -s, and the .top on stdin. */
function storedTops(log: string): Array<{ name: string; top: Record<string, string> }> {
  const lines = readFileSync(log, 'utf8').trim().split('\n')
  const out: Array<{ name: string; top: Record<string, string> }> = []
  lines.forEach((l, i) => {
    const m = /^ARGS add-oauth -s (\S+)/.exec(l)
    if (m) out.push({ name: m[1]!, top: JSON.parse(lines[i + 1]!) as Record<string, string> })
  })
  return out
}

describe('a submit file with several handles of one provider', () => {
  // HTCondor: `<service>_oauth_permissions_<handle>` gives each handle its own scopes, and each
  // `<service>_<handle>.use` must hold a token for that handle's scopes; the Vault credmon narrows every
  // handle from the same stored credential. One handle's registration must not take the other's away.
  const services = ['cms&handle=read&scopes=compute.read', 'cms&handle=write&scopes=compute.create']

  it('our credmon writes each handle\'s .use with that handle\'s scopes', async () => {
    const fake = fakeStoreCred()
    const env = { PATH: `${fake.dir}:/usr/bin:/bin`, BEARER_TOKEN: await t.userToken({ preferred_username: 'hanna' }), CONDOR_TOKEN_BROKER_URL: url, CONDOR_TOKEN_BROKER_CA_FILE: caFile }
    expect((await cli(['credential-storer', ...services], env)).code).toBe(0)
    const credDir = tempDir()
    mkdirSync(join(credDir, 'hanna'))
    for (const { name, top } of storedTops(fake.log)) writeFileSync(join(credDir, 'hanna', `${name}.top`), JSON.stringify(top))
    const client = brokerClient({ brokerUrl: BROKER, credential: () => t.creddToken(), fetch: (u, init) => Promise.resolve(t.app.request(u, init)) })
    const credmon = new Credmon({ credDir, providers: ['cms'], brokerUrl: BROKER, useFormat: 'json' }, { fs: nodeCredDirFs, clock: systemClock, client, log: silentLogger })
    expect(await credmon.scan()).toEqual({ refreshed: 2, failed: 0, removed: 0 })
    const scopeOf = (base: string) => decodeJwt((JSON.parse(readFileSync(join(credDir, 'hanna', `${base}.use`), 'utf8')) as { access_token: string }).access_token).scope
    expect(scopeOf('cms_read')).toBe('compute.read')
    expect(scopeOf('cms_write')).toBe('compute.create')
  })

  it('HTCondor\'s Vault credmon reads each handle with its own .top', async () => {
    const fake = fakeStoreCred()
    const env = { PATH: `${fake.dir}:/usr/bin:/bin`, BEARER_TOKEN: await t.userToken({ preferred_username: 'ivo' }), CONDOR_TOKEN_BROKER_URL: url, CONDOR_TOKEN_BROKER_CA_FILE: caFile }
    expect((await cli(['credential-storer', '--mode', 'vault', ...services], env)).code).toBe(0)
    const tops = storedTops(fake.log)
    expect(tops.map((x) => x.name)).toEqual(['cms_read', 'cms_write'])
    for (const { top } of tops) {
      // The Vault credmon's narrowed read: GET vault_url, X-Vault-Token, minimum_seconds and the .top's scopes.
      const res = await t.vault.request(`${new URL(top.vault_url!).pathname}?${new URLSearchParams({ minimum_seconds: '2400', scopes: top.scopes! })}`, { headers: { 'X-Vault-Token': top.vault_token! } })
      expect(res.status).toBe(200)
      expect(decodeJwt((await res.json() as { data: { access_token: string } }).data.access_token).scope).toBe(top.scopes)
    }
  })
})

/**
 * A stand-in for the credd behind condor_store_cred, as the storer relies on it: `add-oauth -s NAME -i -`
 * stores stdin as `<userDir>/NAME.top`, and `query-oauth -s NAME` says the credential is held (exit 0)
 * while that `.top` is there.
 */
function fakeCredd(userDir: string): { dir: string; log: string } {
  const dir = tempDir()
  const log = join(dir, 'calls.log')
  const script = join(dir, 'condor_store_cred')
  writeFileSync(script, `#!/bin/sh
echo "ARGS $*" >> ${log}
if [ "$1" = query-oauth ]; then test -f "${userDir}/$3.top"; exit $?; fi
if [ "$1" = add-oauth ]; then cat > "${userDir}/.$3.top.tmp" && mv "${userDir}/.$3.top.tmp" "${userDir}/$3.top"; fi
`)
  chmodSync(script, 0o755)
  return { dir, log }
}

describe('a credential that dies at the broker, from the access point', () => {
  it('IAM refuses the refresh token: our credmon ends .use and .top, and the next submit\'s storer registers again by itself', async () => {
    const credDir = tempDir()
    const userDir = join(credDir, 'rhea')
    mkdirSync(userDir)
    const credd = fakeCredd(userDir)
    const env = { PATH: `${credd.dir}:/usr/bin:/bin`, BEARER_TOKEN: await t.userToken({ preferred_username: 'rhea' }), CONDOR_TOKEN_BROKER_URL: url, CONDOR_TOKEN_BROKER_CA_FILE: caFile }
    const adds = () => readFileSync(credd.log, 'utf8').split('\n').filter((l) => l.startsWith('ARGS add-oauth')).length
    expect((await cli(['credential-storer', 'cms'], env)).code).toBe(0)
    expect(adds()).toBe(1)
    let offset = 0
    const clock = { now: () => systemClock.now() + offset }
    const client = brokerClient({ brokerUrl: BROKER, credential: () => t.creddToken(), fetch: (u, init) => Promise.resolve(t.app.request(u, init)) })
    // A minimum no cached token meets: every read the credmon makes is a refresh at IAM.
    const credmon = new Credmon({ credDir, providers: ['cms'], brokerUrl: BROKER, useFormat: 'json', minimumSeconds: 9_999_999 }, { fs: nodeCredDirFs, clock, client, log: silentLogger })
    expect(await credmon.scan()).toEqual({ refreshed: 1, failed: 0, removed: 0 })

    // The stored refresh token dies at IAM (expired after its 30 days, or the user disabled there).
    t.iam.clearRefreshTokens()
    offset += 3 * 3600
    expect(await credmon.scan()).toEqual({ refreshed: 0, failed: 1, removed: 1 })
    expect(readdirSync(userDir)).toEqual([])

    // The user's next submit: the credd no longer holds the credential, so the storer registers it again.
    expect((await cli(['credential-storer', 'cms'], env)).code).toBe(0)
    expect(adds()).toBe(2)
    offset += 60
    expect(await credmon.scan()).toEqual({ refreshed: 1, failed: 0, removed: 0 })
    expect(readdirSync(userDir).sort()).toEqual(['cms.top', 'cms.use'])
  })
})

describe('condor-token-broker credential revoke | list', () => {
  it('revokes a stored credential in the database serve uses, audited', async () => {
    const fake = fakeStoreCred()
    await cli(['credential-storer', 'cms'], { PATH: `${fake.dir}:/usr/bin:/bin`, BEARER_TOKEN: await t.userToken({ preferred_username: 'pete' }), CONDOR_TOKEN_BROKER_URL: url, CONDOR_TOKEN_BROKER_CA_FILE: caFile })
    const env = { CTB_DATA_DIR: join(t.dbFile, '..'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_ISSUER: BROKER }
    const list = await cli(['credential', 'list', '--json'], env)
    expect(list.code).toBe(0)
    expect(list.out.split('\n').map((l) => JSON.parse(l) as { user: string; revoked: boolean }).find((c) => c.user === 'pete')).toMatchObject({ revoked: false })
    // A writing command needs the audit MAC key, which a public broker never makes up (keys init does).
    const refused = await cli(['credential', 'revoke', 'pete', 'cms'], env)
    expect(refused).toMatchObject({ code: 1, err: expect.stringMatching(/^condor-token-broker: no audit MAC key at \S+: run "condor-token-broker keys init"/) })
    ensureAuditMacKeyFile(join(t.dbFile, '..', 'keys', 'audit_mac.key'))
    const r = await cli(['credential', 'revoke', 'pete', 'cms', '--reason', 'left the experiment'], env)
    expect(r).toMatchObject({ code: 0, out: 'revoked credential pete/cms' })
    expect((await t.jobToken('pete', 'cms', t.creddToken())).status).toBe(403)
    const again = await cli(['credential', 'revoke', 'pete', 'cms'], env)
    expect(again).toMatchObject({ code: 1, err: 'condor-token-broker: no unrevoked credential pete/cms' })
    const events = (await t.store.query({ limit: 10, type: 'credential.revoked' })).records.map((x) => x.event)
    expect(events[0]).toMatchObject({ reason: 'left the experiment', detail: { user: 'pete', provider: 'cms' } })
  })
})
