import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { startBroker, type RunningBroker } from '../../src/server.ts'
import { cli } from '../support/cli.ts'
import { freePort, requireTool } from '../support/peers.ts'
import { scitokensTool as scitokens } from '../support/scitokens.ts'
import { trustSystemCa } from '../support/system_ca.ts'

function tamper(token: string): string {
  const [h, p, s] = token.split('.')
  const claims = JSON.parse(Buffer.from(p!, 'base64url').toString())
  claims.sub = 'mallory'
  return `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`
}

describe.each(['ES256', 'RS256'] as const)('scitokens-cpp verifies broker tokens over HTTPS discovery (%s)', (alg) => {
  let broker: RunningBroker
  let dir: string
  let env: NodeJS.ProcessEnv
  let untrust: () => void = () => {}
  const AUD = 'condor://ap.example.org:9618'

  beforeAll(async () => {
    requireTool('scitokens-verify', 'scitokens-cpp')
    dir = mkdtempSync(join(tmpdir(), 'ctb-interop-'))
    const port = await freePort()
    env = { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_ISSUER: `https://localhost:${port}`, CTB_SCITOKEN_ALG: alg, CTB_DEV_IAM_PORT: '0' }
    broker = await startBroker(loadConfig({ env }), { log: silentLogger })
    untrust = trustSystemCa(broker.devCaFile!)
  })
  afterAll(async () => {
    untrust()
    await broker?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it.each(['wlcg', 'scitokens2'])('accepts a %s token fetched via discovery + JWKS, and rejects it tampered', async (profile) => {
    const minted = await cli(['token', 'create', '--scitoken', '--sub', 'alice', '--aud', AUD, '--scope', 'condor:/READ condor:/WRITE', '--lifetime', '600', '--profile', profile], env)
    expect(minted.code, minted.err).toBe(0)
    const token = minted.out.trim()
    const ok = await scitokens('scitokens-verify', [token], dir)
    expect(ok.out).not.toMatch(/fail|error/i)
    expect(ok.code).toBe(0)
    const access = await scitokens('scitokens-list-access', [token, env.CTB_ISSUER!, AUD], dir)
    expect(access.code, access.out).toBe(0)
    expect(access.out).toMatch(/condor:\/READ/)
    const bad = await scitokens('scitokens-verify', [tamper(token)], dir)
    expect(bad.code).not.toBe(0)
  })

  it('rejects a token whose audience does not match the enforcer', async () => {
    const minted = await cli(['token', 'create', '--scitoken', '--sub', 'alice', '--aud', 'condor://other.example.org:9618', '--scope', 'condor:/READ'], env)
    const r = await scitokens('scitokens-list-access', [minted.out.trim(), env.CTB_ISSUER!, AUD], dir)
    expect(r.code).not.toBe(0)
    expect(r.out).toMatch(/aud/)
  })

  it('control: with the CA untrusted and an empty key cache, verification fails (so the checks above used HTTPS discovery)', async () => {
    const minted = await cli(['token', 'create', '--scitoken', '--sub', 'alice', '--aud', AUD, '--scope', 'condor:/READ'], env)
    untrust()
    untrust = () => {}
    const fresh = mkdtempSync(join(tmpdir(), 'ctb-nocache-'))
    try {
      const r = await scitokens('scitokens-verify', [minted.out.trim()], fresh)
      expect(r.code).not.toBe(0)
    } finally {
      rmSync(fresh, { recursive: true, force: true })
    }
  })
})
