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

function kidOf(token: string): string {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid
}

// scitokens-cpp keeps a fetched key set and does not refetch it for an unknown kid until its refresh
// interval (600 s) has passed (docs/htcondor-tokens.md §5.3). A relying party that verified one of our
// tokens just before `keys rotate` must verify the tokens minted just after it, with that same cache.
describe('scitokens-cpp with a key set cached before keys rotate', () => {
  let broker: RunningBroker
  let dir: string
  let env: NodeJS.ProcessEnv
  let untrust: () => void = () => {}

  beforeAll(async () => {
    requireTool('scitokens-verify', 'scitokens-cpp')
    dir = mkdtempSync(join(tmpdir(), 'ctb-interop-rot-'))
    const port = await freePort()
    env = { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_ISSUER: `https://localhost:${port}`, CTB_SCITOKEN_ALG: 'ES256', CTB_DEV_IAM_PORT: '0' }
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

  it.each([['the same algorithm', []], ['another algorithm (--alg RS256)', ['--alg', 'RS256']]] as const)('verifies tokens minted right after a rotation to %s', async (_what, args) => {
    const before = await mint()
    const cached = await scitokens('scitokens-verify', [before], dir)
    expect(cached.code, cached.out).toBe(0)

    const rot = await cli(['keys', 'rotate', ...args], env)
    expect(rot.code, rot.err).toBe(0)
    // The broker in this process takes the rotation up from the keyring watch; bounded wait (10 s).
    const ring = join(dir, 'data/keys/jwt/keyring.json')
    const { readFileSync } = await import('node:fs')
    const active = (): string | undefined => (JSON.parse(readFileSync(ring, 'utf8')).keys as { kid: string; retired?: number; next?: boolean }[]).find((k) => k.retired === undefined && k.next !== true)?.kid
    let after = await mint()
    for (let i = 0; i < 200 && kidOf(after) !== active(); i++) { await new Promise((r) => setTimeout(r, 50)); after = await mint() }
    expect(kidOf(after)).toBe(active())

    const verified = await scitokens('scitokens-verify', [after], dir)
    expect(verified.code, verified.out).toBe(0)
  })
})
