import { describe, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { createVaultApp } from '../../src/http/vault_app.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { BrokerMetrics } from '../../src/metrics/broker_metrics.ts'
import { StoreOverloaded } from '../../src/storage/group_commit.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'
import { parsePrometheusText, sampleValue } from '../support/prometheus_text.ts'

/**
 * Every read the Vault-compatible listener does not answer with a token is in ctb_vault_refusals_total
 * (docs/metrics.md), outages and unknown paths too: a 503 (the store, or IAM, out of reach) is what an
 * access point's Vault credmon sees when its users' `.use` files stop being renewed, and a 404 is a credmon
 * (or a scanner) asking for a path the broker does not serve. The reasons are a fixed vocabulary, each
 * present from 0: store_unavailable (503, the store), unavailable (503, anything else: IAM),
 * not_found (404), server_error (500).
 */
const t = await useCredentialsApp()
const metrics = new BrokerMetrics({ clock: { now: () => Math.floor(Date.now() / 1000) }, policy: () => t.policy.current, process: false, vaultListener: true })
const vault = createVaultApp({ store: t.store, jobTokens: t.credentials.jobTokens, log: silentLogger, metrics })

async function counts(): Promise<Record<string, number | undefined>> {
  const samples = parsePrometheusText((await metrics.render()).body)
  return Object.fromEntries(['store_unavailable', 'unavailable', 'not_found', 'server_error']
    .map((reason) => [reason, sampleValue(samples, 'ctb_vault_refusals_total', { reason })]))
}

describe('ctb_vault_refusals_total counts the listener\'s 503, 404 and 500 answers', () => {
  it('has every such reason from 0', async () => {
    expect(await counts()).toEqual({ store_unavailable: 0, unavailable: 0, not_found: 0, server_error: 0 })
  })

  it('counts a path it does not serve as not_found', async () => {
    const before = await counts()
    expect((await vault.request('/v1/sys/health')).status).toBe(404)
    expect((await vault.request('/v1/secret/oauth/creds/alice/cms/extra', { headers: { 'X-Vault-Token': 'x' } })).status).toBe(404)
    expect((await counts()).not_found).toBe(before.not_found! + 2)
  })

  it('counts IAM out of reach as unavailable', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'olga' }), { provider: 'cms', mode: 'vault' })
    expect(reg.status).toBe(201)
    const top = (await reg.json() as { top: { vault_token: string; vault_url: string } }).top
    const before = await counts()
    t.iam.faults.token = 'down'
    try {
      const res = await vault.request(`${new URL(top.vault_url).pathname}?minimum_seconds=2400`, { headers: { 'X-Vault-Token': top.vault_token } })
      expect(res.status).toBe(503)
    } finally { t.iam.faults.token = 'ok' }
    expect(await counts()).toEqual({ ...before, unavailable: before.unavailable! + 1 })
  })

  it('counts the audit queue full as unavailable, as the main listener answers it (temporarily_unavailable)', async () => {
    const before = await counts()
    const busy = createVaultApp({ store: { credentialByVaultToken: async () => { throw new StoreOverloaded(100) } }, jobTokens: t.credentials.jobTokens, log: silentLogger, metrics })
    expect((await busy.request('/v1/secret/oauth/creds/alice/cms', { headers: { 'X-Vault-Token': 'x' } })).status).toBe(503)
    expect(await counts()).toEqual({ ...before, unavailable: before.unavailable! + 1 })
  })

  it('counts the store out of reach as store_unavailable, and a fault as server_error', async () => {
    const before = await counts()
    const down = createVaultApp({ store: { credentialByVaultToken: async () => { throw new AuditStoreUnavailable(new Error('database is locked'), 'read') } }, jobTokens: t.credentials.jobTokens, log: silentLogger, metrics })
    expect((await down.request('/v1/secret/oauth/creds/alice/cms', { headers: { 'X-Vault-Token': 'x' } })).status).toBe(503)
    const broken = createVaultApp({ store: { credentialByVaultToken: async () => { throw new TypeError('a bug') } }, jobTokens: t.credentials.jobTokens, log: silentLogger, metrics })
    expect((await broken.request('/v1/secret/oauth/creds/alice/cms', { headers: { 'X-Vault-Token': 'x' } })).status).toBe(500)
    expect(await counts()).toEqual({ ...before, store_unavailable: before.store_unavailable! + 1, server_error: before.server_error! + 1 })
  })
})
