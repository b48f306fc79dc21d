import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify } from 'jose'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/peers.ts'
import { BIN, startServeProcess, stopServeProcess } from '../support/serve_process.ts'
import { keyReloadRecords, serveSciTokenClient } from '../support/serve_scitoken_client.ts'

/**
 * Hot key rotation: `keys rotate` run beside a serving broker takes effect with no signal and no restart.
 * A SciToken minted afterwards carries the new kid and verifies with the keys fetched from /jwks; the one
 * minted before still verifies, since the retired key stays published until its tokens have expired.
 */
describe('keys rotate in a running broker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-rotate-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('signs with the new key without SIGHUP, and /jwks verifies old and new tokens', async () => {
    const port = await freePort()
    const iamPort = await freePort()
    const env = { ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort), CTB_POLICY_WATCH: 'false' }
    const broker = await startServeProcess(env)
    const base = `https://127.0.0.1:${port}`
    const client = serveSciTokenClient(base, iamPort, [join(dir, 'data/tls/dev-ca.crt')])
    const { tlsFetch, sciToken, publishedKids } = client
    try {
      const oldToken = await sciToken()
      const oldKid = decodeProtectedHeader(oldToken).kid
      // serve created the keys, and published the next one with them: verifiers fetch it from the start.
      const startKids = await publishedKids()
      expect(startKids).toHaveLength(2)
      expect(startKids).toContain(oldKid)
      const preparedKid = startKids.find((k) => k !== oldKid)

      const rotate = spawnSync(process.execPath, [BIN, 'keys', 'rotate'], { env, encoding: 'utf8', timeout: 60_000 })
      expect(rotate.status, rotate.stderr).toBe(0)
      const newKid = /new active kid=(\S+)/.exec(rotate.stdout)?.[1]
      expect(newKid, rotate.stdout).toBeDefined()
      expect(newKid).toBe(preparedKid)
      expect(rotate.stderr).not.toMatch(/not in \/jwks before/)
      // The key after it is published now, so verifiers know it before the next rotation signs with it.
      const nextKid = /next kid=([^\s:]+)/.exec(rotate.stdout)?.[1]
      expect(nextKid, rotate.stdout).toBeDefined()

      // No signal is sent: the broker notices the keyring on its own. Bounded wait (10 s).
      // The new active kid was published before; the one after it appears only with the reload.
      for (let i = 0; i < 200 && !(await publishedKids()).includes(nextKid!); i++) await new Promise((r) => setTimeout(r, 50))
      expect((await publishedKids()).sort()).toEqual([oldKid, newKid, nextKid].sort())

      const newToken = await sciToken()
      expect(decodeProtectedHeader(newToken).kid).toBe(newKid)
      const jwks = createRemoteJWKSet(new URL(`${base}/jwks`), { [customFetch]: tlsFetch })
      const issuer = `https://localhost:${port}`
      expect((await jwtVerify(newToken, jwks, { issuer })).protectedHeader.kid).toBe(newKid)
      // The overlap: a token signed before the rotation still verifies against what /jwks publishes now.
      expect((await jwtVerify(oldToken, jwks, { issuer })).protectedHeader.kid).toBe(oldKid)
    } finally {
      await stopServeProcess(broker)
      await client.close()
    }
    // One reload for one rotation, however many file events writing the key made.
    expect(await keyReloadRecords(join(dir, 'data', 'audit.db'))).toEqual([['allow', expect.stringMatching(/^watch: signing with /)]])
  }, 90_000)
})
