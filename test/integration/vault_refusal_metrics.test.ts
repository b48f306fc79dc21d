import { request } from 'node:https'
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import { cli } from '../support/cli.ts'
import { startE2e, type E2e } from '../support/broker_e2e.ts'
import { parsePrometheusText, sampleValue } from '../support/prometheus_text.ts'
import { tempDir } from '../support/tmp.ts'

/**
 * The Vault-compatible listener's refusals (an unknown Vault token, the address limit, a bad query, a
 * credential the policy no longer serves) were in no metric: a credmon failing every read, or someone
 * guessing Vault tokens, showed only in logs. ctb_vault_refusals_total counts them by a fixed reason.
 */
describe('ctb_vault_refusals_total on /metrics', () => {
  let e: E2e
  let users: string
  let shipped: string
  beforeAll(async () => {
    const dir = tempDir('ctb-vaultmetrics-')
    const file = join(dir, 'broker.yaml')
    // Two unknown tokens from one address, then that address is turned away (docs/rate-limits.md).
    writeFileSync(file, `credentials:
  enabled: true
  providers:
    - { name: cms, kind: iam, role: job-credentials }
  vault: { enabled: true, port: 0 }
rate_limits:
  address: { requests: 2, per: 600 }
`)
    const policies = join(dir, 'policies')
    cpSync('policies', policies, { recursive: true })
    users = join(policies, '30-users.yaml')
    shipped = readFileSync(users, 'utf8')
    if (!shipped.includes('fetched_by: { roles: [credd] }')) throw new Error('the shipped job-credentials grant has no fetched_by line to opt in')
    writeFileSync(users, shipped.replace('fetched_by: { roles: [credd] }', 'fetched_by: { roles: [credd], vault_reads: true }'))
    e = await startE2e({ CTB_CONFIG: file, CTB_POLICY_DIR: policies })
  }, 30_000)
  afterAll(async () => { await e?.close() })

  const get = (url: string, headers: Record<string, string> = {}, method = 'GET') => new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request(url, { method, ca: e.ca, headers, timeout: 10_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
  const refusals = async () => {
    const page = await get(`${e.broker.url}/metrics`)
    expect(page.status).toBe(200)
    const samples = parsePrometheusText(page.text)
    return Object.fromEntries(['unknown_token', 'refused', 'address_limit', 'bad_request', 'method_not_allowed', 'store_unavailable', 'unavailable', 'not_found', 'server_error']
      .map((reason) => [reason, sampleValue(samples, 'ctb_vault_refusals_total', { reason })]))
  }

  it('counts each refusal under its reason, every reason present from the start', async () => {
    const none = { store_unavailable: 0, unavailable: 0, not_found: 0, server_error: 0 }
    expect(await refusals()).toEqual({ unknown_token: 0, refused: 0, address_limit: 0, bad_request: 0, method_not_allowed: 0, ...none })

    const { accessToken } = await devIamUserToken(e.devIam, 'alice', { scope: 'openid profile wlcg wlcg.groups offline_access compute.read storage.read:/store/user storage.create:/store/user storage.modify:/store/user' })
    const caFile = join(e.dir, 'ca.pem')
    writeFileSync(caFile, e.ca)
    const stored = await cli(['credential-storer', '--print', '--mode', 'vault', '--broker', e.broker.url.replace('127.0.0.1', 'localhost'), '--ca-file', caFile, 'cms'], { BEARER_TOKEN: accessToken })
    expect(stored.code, stored.err).toBe(0)
    const top = JSON.parse(stored.out) as { vault_token: string; vault_url: string }
    const read = `${e.broker.vaultUrl}${new URL(top.vault_url).pathname}`
    const holder = { 'X-Vault-Token': top.vault_token }

    expect((await get(`${read}?minimum_seconds=soon`, holder)).status).toBe(400)
    expect((await get(`${read}?audience=a&audiences=b`, holder)).status).toBe(400)
    expect((await get(read, holder, 'POST')).status).toBe(405)
    // The policy stops serving Vault reads: the holder's token is known, its read refused.
    writeFileSync(users, shipped)
    expect(e.broker.services.policy.reload('manual')).toMatchObject({ ok: true })
    expect((await get(read, holder)).status).toBe(403)
    expect(await refusals()).toEqual({ unknown_token: 0, refused: 1, address_limit: 0, bad_request: 2, method_not_allowed: 1, ...none })

    expect((await get(read)).status).toBe(403)
    expect((await get(read, { 'X-Vault-Token': 'made-up' })).status).toBe(403)
    expect((await get(read, { 'X-Vault-Token': 'made-up' })).status).toBe(429)
    expect(await refusals()).toEqual({ unknown_token: 2, refused: 1, address_limit: 1, bad_request: 2, method_not_allowed: 1, ...none })
    // A path the listener does not serve (a scanner, a misconfigured vault_url) is counted too.
    expect((await get(`${e.broker.vaultUrl}/v1/sys/health`)).status).toBe(404)
    expect(await refusals()).toEqual({ unknown_token: 2, refused: 1, address_limit: 1, bad_request: 2, method_not_allowed: 1, ...none, not_found: 1 })
  }, 30_000)
})
