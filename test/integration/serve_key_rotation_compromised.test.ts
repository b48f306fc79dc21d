import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort } from '../support/peers.ts'
import { BIN, startServeProcess, stopServeProcess } from '../support/serve_process.ts'
import { serveSciTokenClient } from '../support/serve_scitoken_client.ts'

/**
 * `keys rotate --compromised` beside a serving broker (development mode, as serve makes it): with no
 * signal the broker stops publishing every key it published, signs with the fresh one, and a token the
 * stolen key signed no longer verifies against its /jwks; a restart on the same data directory (its
 * development key mark untouched) publishes only the fresh keys.
 */
describe('keys rotate --compromised in a running broker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctb-compromised-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('unpublishes the stolen kids at once, without SIGHUP, and a restart keeps them out', async () => {
    const port = await freePort()
    const iamPort = await freePort()
    const env = { ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: String(iamPort), CTB_POLICY_WATCH: 'false' }
    let broker = await startServeProcess(env)
    const base = `https://127.0.0.1:${port}`
    const client = serveSciTokenClient(base, iamPort, [join(dir, 'data/tls/dev-ca.crt')])
    const { tlsFetch, sciToken, publishedKids } = client
    const issuer = `https://localhost:${port}`
    let before: string[] = []
    let after: string[] = []
    try {
      const stolenToken = await sciToken()
      before = await publishedKids()
      expect(before).toHaveLength(2)

      const r = spawnSync(process.execPath, [BIN, 'keys', 'rotate', '--compromised'], { env, encoding: 'utf8', timeout: 60_000 })
      expect(r.status, r.stderr).toBe(0)
      const fresh = /new active kid=([^\s;]+)/.exec(r.stdout)?.[1]
      expect(fresh, r.stdout).toBeDefined()

      // Bounded wait (10 s) for the watcher's reload.
      for (let i = 0; i < 200 && (await publishedKids()).some((k) => before.includes(k)); i++) await new Promise((res) => setTimeout(res, 50))
      after = await publishedKids()
      for (const kid of before) expect(after).not.toContain(kid)
      expect(after).toContain(fresh)

      const newToken = await sciToken()
      expect(decodeProtectedHeader(newToken).kid).toBe(fresh)
      const jwks = createLocalJWKSet(await (await tlsFetch(`${base}/jwks`)).json() as JSONWebKeySet)
      expect((await jwtVerify(newToken, jwks, { issuer })).protectedHeader.kid).toBe(fresh)
      await expect(jwtVerify(stolenToken, jwks, { issuer })).rejects.toThrow()
      const discovery = await (await tlsFetch(`${base}/.well-known/openid-configuration`)).json() as { jwks_uri: string }
      expect(discovery.jwks_uri).toMatch(/\/jwks$/)
    } finally {
      await stopServeProcess(broker)
    }
    broker = await startServeProcess(env)
    try {
      expect((await publishedKids()).sort()).toEqual([...after].sort())
    } finally {
      await stopServeProcess(broker)
      await client.close()
    }
  }, 120_000)
})
