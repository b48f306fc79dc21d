import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { claimsOf, exchangeForm, JWT, startE2e, type E2e } from '../support/broker_e2e.ts'
import { freePort, requireTool } from '../support/peers.ts'
import { scitokensTool as tool } from '../support/scitokens.ts'
import { trustSystemCa } from '../support/system_ca.ts'


/** a SciToken obtained through POST /token (IAM token in) is accepted by scitokens-cpp. */
describe('POST /token SciTokens verify with scitokens-cpp', () => {
  let e: E2e
  let home: string
  let untrust: () => void = () => {}
  const AUD = 'condor://ap1.cloud-a.example.org:9618'

  beforeAll(async () => {
    requireTool('scitokens-verify', 'scitokens-cpp')
    const port = await freePort()
    e = await startE2e({ CTB_LISTEN_PORT: String(port), CTB_ISSUER: `https://localhost:${port}` })
    untrust = trustSystemCa(e.broker.devCaFile!)
    home = mkdtempSync(join(tmpdir(), 'ctb-sci-home-'))
  })
  afterAll(async () => {
    untrust()
    await e?.close()
    rmSync(home, { recursive: true, force: true })
  })

  // The shipped policy pins the wlcg profile for submit users; the scitokens2 profile is covered by
  // scitokens_verify.test.ts with CLI-minted tokens signed by the same key store.
  it('alice exchanges her IAM token for a WLCG token that scitokens-cpp accepts, and a forged one fails', async () => {
    const res = await e.post('/token', exchangeForm(await e.user('alice'), 'submit-user', { requested_token_type: JWT, audience: AUD, scope: 'compute.read compute.create compute.modify compute.cancel' }))
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    const token = res.body.access_token as string
    expect(claimsOf(token)['wlcg.ver']).toBe('1.0')
    const verify = await tool('scitokens-verify', [token], home)
    expect(verify.code, verify.out).toBe(0)
    const access = await tool('scitokens-list-access', [token, e.broker.services.config.issuer, AUD], home)
    expect(access.code, access.out).toBe(0)
    expect(access.out).toMatch(/compute\.read|condor/)
    const [h, , s] = token.split('.')
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claimsOf(token), sub: 'mallory@pool.example.org' })).toString('base64url')}.${s}`
    expect((await tool('scitokens-verify', [forged], home)).code).not.toBe(0)
  })
})
