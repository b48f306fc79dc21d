// A reload that is refused keeps the old policy, keys or certificate in force and says so in one log line;
// /metrics counts it too, so an operator can alert on a broker serving what is no longer on disk
// (docs/metrics.md, "Reloads").
import { request } from 'node:https'
import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startE2e, type E2e } from '../support/broker_e2e.ts'
import { parsePrometheusText, sampleValue } from '../support/prometheus_text.ts'

let shared: E2e
let policyDir: string

beforeAll(async () => {
  policyDir = mkdtempSync(join(tmpdir(), 'ctb-reload-metrics-'))
  cpSync('policies', policyDir, { recursive: true })
  shared = await startE2e({ CTB_POLICY_DIR: policyDir, CTB_SCITOKEN_WATCH_KEYS: 'false' })
})
afterAll(async () => {
  await shared?.close()
  rmSync(policyDir, { recursive: true, force: true })
})

async function reloads(what: string, outcome: string, e: E2e = shared): Promise<number | undefined> {
  const page = await new Promise<string>((resolve, reject) => {
    const req = request(`${e.broker.url}/metrics`, { ca: e.ca, timeout: 10_000 }, (r) => {
      let text = ''
      r.setEncoding('utf8')
      r.on('data', (c) => { text += c })
      r.on('end', () => resolve(text))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
  return sampleValue(parsePrometheusText(page), 'ctb_reloads_total', { what, outcome })
}

describe('a refused reload is counted in /metrics', () => {
  let e: E2e
  beforeAll(() => { e = shared })
  it('counts a policy file cut off half-way as one refused policy reload', async () => {
    const file = join(policyDir, '30-users.yaml')
    const whole = readFileSync(file, 'utf8')
    writeFileSync(file, whole.slice(0, Math.floor(whole.length / 2)) + '\n  - role: [unterminated\n')
    expect(e.broker.services.policy.reload('sighup').ok).toBe(false)
    expect(await reloads('policy', 'refused')).toBe(1)
    writeFileSync(file, `${whole}\n# edited\n`)
    expect(e.broker.services.policy.reload('sighup').ok).toBe(true)
    expect(await reloads('policy', 'applied')).toBe(1)
  })

  it('counts a half-written keyring and an unreadable certificate on SIGHUP as refused', async () => {
    const keyring = join(e.env.CTB_DATA_DIR!, 'keys', 'jwt', 'keyring.json')
    const certFile = join(e.env.CTB_DATA_DIR!, 'tls', 'server.crt')
    const ring = readFileSync(keyring, 'utf8')
    const cert = readFileSync(certFile, 'utf8')
    writeFileSync(keyring, ring.slice(0, 20), { mode: 0o600 })
    writeFileSync(certFile, cert.slice(0, 40))
    try {
      const r = await e.broker.reload('sighup')
      expect(r.keys.ok).toBe(false)
      expect(r.tls.ok).toBe(false)
      expect(await reloads('keys', 'refused')).toBe(1)
      expect(await reloads('tls', 'refused')).toBe(1)
    } finally {
      writeFileSync(keyring, ring, { mode: 0o600 })
      writeFileSync(certFile, cert)
    }
    const r = await e.broker.reload('sighup')
    expect(r.keys.ok && r.tls.ok).toBe(true)
    expect(await reloads('keys', 'applied')).toBe(1)
    expect(await reloads('tls', 'applied')).toBe(1)
  })
})

describe('an unreadable HTCondor key file', () => {
  it('counts a SIGHUP that finds it unreadable as a refused key reload', async () => {
    const e = await startE2e({ CTB_SCITOKEN_WATCH_KEYS: 'false' })
    try {
      const keyFile = join(e.env.CTB_DATA_DIR!, 'keys', 'condor', 'broker1')
      chmodSync(keyFile, 0o644)
      const r = await e.broker.reload('sighup')
      expect(r.keys.ok).toBe(true)
      expect(await reloads('keys', 'refused', e)).toBe(1)
      expect(await reloads('keys', 'applied', e)).toBe(0)
    } finally {
      await e.close()
    }
  })
})

describe('the keyring watch', () => {
  it('counts a keyring it finds half-written once its files settle as a refused key reload', async () => {
    const e = await startE2e()
    try {
      const keyring = join(e.env.CTB_DATA_DIR!, 'keys', 'jwt', 'keyring.json')
      const ring = readFileSync(keyring, 'utf8')
      expect(await reloads('keys', 'refused', e)).toBe(0)
      writeFileSync(keyring, ring.slice(0, 20), { mode: 0o600 })
      // The watch waits 300 ms after the last change; bounded wait of 5 s.
      for (let i = 0; i < 50 && (await reloads('keys', 'refused', e)) === 0; i++) await new Promise((r) => setTimeout(r, 100))
      expect(await reloads('keys', 'refused', e)).toBe(1)
      expect(await reloads('keys', 'applied', e)).toBe(0)
    } finally {
      await e.close()
    }
  })
})
