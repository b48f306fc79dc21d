import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { claimsOf, exchangeForm, JWT, startE2e, type E2e } from '../support/broker_e2e.ts'
import { freePort, requireTool } from '../support/peers.ts'
import { trustSystemCa } from '../support/system_ca.ts'
import { putStoreFile, startXrootd, XROOTD_HTTPS_PORT, type RunningXrootd } from '../support/xrootd.ts'

const AUD = `https://localhost:${XROOTD_HTTPS_PORT}`

/** Each user's own area at the test storage (base path /store), named by the caller's preferred_username. */
const POLICY = `version: 1
rules:
  - id: own-area
    match:
      issuer: \${IAM_ISSUER}
      groups: [/htc/users]
    grants:
      - role: job-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        profile: wlcg
        scopes: ["storage.read:/{preferred_username}/files"]
        audiences: ["${AUD}"]
        lifetime: { default: 10m, max: 1h }
`

/**
 * XRootD 5.5.3 (Debian bookworm) matches a scope path as a byte prefix, and scitokens-cpp drops a trailing
 * "/" before it sees it: storage.read:/alice, and storage.read:/alice/ too, reads /store/alicex (fixed in
 * 5.6.9). With per-caller paths that is one user reading another's area whenever one name starts with the
 * other. A fixed segment after the caller's value (/{preferred_username}/files) ends every match at the
 * "/" after the name, which is what docs/policies.md tells admins of such storage to write.
 */
describe('per-caller storage path at a real XRootD (byte-prefix matching): a user whose name extends another stays out', () => {
  let e: E2e
  let x: RunningXrootd
  let untrust: () => void = () => {}
  let token: string

  beforeAll(async () => {
    requireTool('curl', 'curl')
    const port = await freePort()
    const policies = mkdtempSync(join(tmpdir(), 'ctb-xrd-prefix-'))
    writeFileSync(join(policies, '40-storage.yaml'), POLICY)
    e = await startE2e({ CTB_LISTEN_PORT: String(port), CTB_ISSUER: `https://localhost:${port}`, CTB_POLICY_DIR: policies })
    untrust = trustSystemCa(e.broker.devCaFile!)
    x = await startXrootd({ issuer: `https://localhost:${port}` })
    putStoreFile(x, 'store/alice/files/mine.txt', 'alice\n')
    putStoreFile(x, 'store/alicex/files/theirs.txt', 'alicex only\n')
    const res = await e.post('/token', exchangeForm(await e.user('alice'), 'job-storage', { requested_token_type: JWT, audience: AUD }))
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    token = res.body.access_token as string
    rmSync(policies, { recursive: true, force: true })
  }, 120_000)

  afterAll(async () => {
    untrust()
    await x?.close()
    await e?.close()
  })

  /** The HTTP status of a GET with the token, from inside XRootD's namespace (async: the issuer relay runs here). */
  function get(path: string): Promise<string> {
    const [cmd, ...args] = x.inNetns(['curl', '-sS', '--max-time', '30', '--cacert', x.caFile, '-o', '/dev/null', '-w', '%{http_code}', '-H', `Authorization: Bearer ${token}`, `${AUD}${path}`])
    return new Promise((resolve) => {
      const p = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'ignore'] })
      let out = ''
      p.stdout.on('data', (c) => { out += c })
      p.on('close', () => resolve(out))
    })
  }

  it("reads the caller's own area", async () => {
    expect(claimsOf(token).scope).toBe('storage.read:/alice/files')
    expect(await get('/store/alice/files/mine.txt'), x.log().slice(-1500)).toBe('200')
  }, 60_000)

  it('does not read the area of a user whose name starts with the caller\'s', async () => {
    expect(await get('/store/alicex/files/theirs.txt'), x.log().slice(-1500)).toBe('403')
  }, 60_000)
})
