import { spawn } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startE2e, type E2e } from '../support/broker_e2e.ts'
import { cli } from '../support/cli.ts'
import { freePort, requireTool } from '../support/peers.ts'
import { trustSystemCa } from '../support/system_ca.ts'
import { putStoreFile, startXrootd, XROOTD_HTTPS_PORT, type RunningXrootd } from '../support/xrootd.ts'

const AUD = `https://localhost:${XROOTD_HTTPS_PORT}`

/**
 * Why the policy loader refuses storage.* scopes in a SciTokens 2.0 grant (src/policy/load.ts): scitokens-cpp
 * turns storage.read:/p into read:/p only for WLCG tokens, so a real XRootD refuses a scitoken:2.0 token that
 * carries storage.read, and reads with read:/p in the same profile. Tokens are minted by the operator CLI
 * with the broker's own key, which no policy checks.
 */
describe('storage scopes by profile at a real XRootD', () => {
  let e: E2e
  let x: RunningXrootd
  let untrust: () => void = () => {}

  beforeAll(async () => {
    requireTool('curl', 'curl')
    const port = await freePort()
    e = await startE2e({ CTB_LISTEN_PORT: String(port), CTB_ISSUER: `https://localhost:${port}` })
    untrust = trustSystemCa(e.broker.devCaFile!)
    x = await startXrootd({ issuer: `https://localhost:${port}` })
    putStoreFile(x, 'store/alice/files/mine.txt', 'alice\n')
  }, 120_000)

  afterAll(async () => {
    untrust()
    await x?.close()
    await e?.close()
  })

  async function mint(profile: string, scope: string): Promise<string> {
    const r = await cli(['token', 'create', '--scitoken', '--sub', 'alice', '--aud', AUD, '--scope', scope, '--lifetime', '600', '--profile', profile], e.env)
    expect(r.code, r.err).toBe(0)
    return r.out.trim()
  }

  /** The HTTP status of a GET with the token, from inside XRootD's namespace. */
  function get(token: string, path: string): Promise<string> {
    const [cmd, ...args] = x.inNetns(['curl', '-sS', '--max-time', '30', '--cacert', x.caFile, '-o', '/dev/null', '-w', '%{http_code}', '-H', `Authorization: Bearer ${token}`, `${AUD}${path}`])
    return new Promise((resolve) => {
      const p = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'ignore'] })
      let out = ''
      p.stdout.on('data', (c) => { out += c })
      p.on('close', () => resolve(out))
    })
  }

  it('a WLCG token with storage.read reads', async () => {
    expect(await get(await mint('wlcg', 'storage.read:/alice'), '/store/alice/files/mine.txt'), x.log().slice(-1500)).toBe('200')
  }, 60_000)

  it('a SciTokens 2.0 token with storage.read is refused', async () => {
    expect(await get(await mint('scitokens2', 'storage.read:/alice'), '/store/alice/files/mine.txt'), x.log().slice(-1500)).toBe('403')
  }, 60_000)

  it('a SciTokens 2.0 token with read reads', async () => {
    expect(await get(await mint('scitokens2', 'read:/alice'), '/store/alice/files/mine.txt'), x.log().slice(-1500)).toBe('200')
  }, 60_000)
})
