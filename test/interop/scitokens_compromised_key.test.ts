import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { get } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { startBroker, type RunningBroker } from '../../src/server.ts'
import { cli } from '../support/cli.ts'
import { requireTool, freePort } from '../support/peers.ts'
import { scitokensTool as scitokens } from '../support/scitokens.ts'
import { trustSystemCa } from '../support/system_ca.ts'

/** GET over TLS trusting only the broker's development CA. */
function getText(url: string, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { ca, timeout: 10_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => resolve(body))
    }).on('error', reject).on('timeout', function (this: { destroy(e: Error): void }) { this.destroy(new Error(`GET ${url} timed out`)) })
  })
}

const kidOf = (token: string): string => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid

/**
 * Moves the issuer's next_update in scitokens-cpp's key cache into the past, as 600 s passing would. The
 * cache is the SQLite file `$XDG_CACHE_HOME/scitokens/scitokens_cpp.sqllite`, table keycache(issuer, keys),
 * `keys` a JSON object {jwks, next_update, expires} (src/scitokens_cache.cpp, 0.7.3 and HEAD). 0.7.3 has
 * no knob for the 600 s (keycache.update_interval_s came later), so the test ages the row instead.
 */
function ageKeyCache(home: string, issuer: string): void {
  const db = new DatabaseSync(join(home, '.cache', 'scitokens', 'scitokens_cpp.sqllite'))
  try {
    const row = db.prepare('SELECT keys FROM keycache WHERE issuer = ?').get(issuer) as { keys: string } | undefined
    expect(row, `no cached key set for ${issuer}`).toBeDefined()
    const entry = JSON.parse(row!.keys) as { next_update: number }
    entry.next_update = Math.floor(Date.now() / 1000) - 1
    db.prepare('UPDATE keycache SET keys = ? WHERE issuer = ?').run(JSON.stringify(entry), issuer)
  } finally {
    db.close()
  }
}

// A stolen SciToken key mints tokens verifiers accept while its kid is in /jwks. After `keys rotate
// --compromised` it is not, and scitokens-cpp's refresh replaces its cached key set with the fetched one
// (store_public_keys deletes the issuer's row and inserts the new set): from then on the stolen key's
// tokens are refused ("Key ID is not published by the issuer"), while the fresh key's verify.
describe('scitokens-cpp after keys rotate --compromised', () => {
  let broker: RunningBroker
  let dir: string
  let env: NodeJS.ProcessEnv
  let issuer: string
  let untrust: () => void = () => {}

  beforeAll(async () => {
    requireTool('scitokens-verify', 'scitokens-cpp')
    dir = mkdtempSync(join(tmpdir(), 'ctb-interop-compromised-'))
    const port = await freePort()
    issuer = `https://localhost:${port}`
    env = { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_ISSUER: issuer, CTB_SCITOKEN_ALG: 'ES256', CTB_DEV_IAM_PORT: '0' }
    broker = await startBroker(loadConfig({ env }), { log: silentLogger })
    untrust = trustSystemCa(broker.devCaFile!)
  })
  afterAll(async () => {
    untrust()
    await broker?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const mint = async (): Promise<string> => {
    const r = await cli(['token', 'create', '--scitoken', '--sub', 'alice', '--aud', 'https://se.example.org', '--scope', 'storage.read:/'], env)
    expect(r.code, r.err).toBe(0)
    return r.out.trim()
  }

  it('refuses a token signed with the compromised key once its cached key set is refreshed', async () => {
    const stolen = await mint()
    const before = await scitokens('scitokens-verify', [stolen], dir)
    expect(before.code, before.out).toBe(0)

    const rot = await cli(['keys', 'rotate', '--compromised'], env)
    expect(rot.code, rot.err).toBe(0)
    const fresh = await mint()
    expect(kidOf(fresh)).not.toBe(kidOf(stolen))
    // The broker in this process takes the rotation up from the keyring watch; bounded wait (10 s).
    const ca = readFileSync(broker.devCaFile!)
    const published = async () => (JSON.parse(await getText(`${issuer}/jwks`, ca)) as { keys: { kid: string }[] }).keys.map((k) => k.kid)
    let kids = await published()
    for (let i = 0; i < 100 && kids.includes(kidOf(stolen)); i++) { await new Promise((r) => setTimeout(r, 100)); kids = await published() }
    expect(kids).not.toContain(kidOf(stolen))
    expect(kids).toContain(kidOf(fresh))

    // Within the verifier's 600 s its cached set still holds the stolen kid: the window the CLI names.
    const cached = await scitokens('scitokens-verify', [stolen], dir)
    expect(cached.code, cached.out).toBe(0)
    ageKeyCache(dir, issuer)
    const after = await scitokens('scitokens-verify', [stolen], dir)
    expect(after.code, after.out).not.toBe(0)
    expect(after.out).toMatch(/Key ID is not published by the issuer|not published/i)
    const good = await scitokens('scitokens-verify', [fresh], dir)
    expect(good.code, good.out).toBe(0)
  })
})
