import { generateKeyPairSync } from 'node:crypto'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { ensureAndLoadKeys, type SigningKeys } from '../../src/keys/signing_keys.ts'
import { auditReadiness, keysReadiness } from '../../src/readiness.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import type { WriteOp } from '../../src/storage/write_ops.ts'
import { TEST_NOW } from '../support/broker_deps.ts'
import { tempDir } from '../support/tmp.ts'

const issuers = { trustDomain: 'pool.example.org', issuer: 'https://broker.example.org' }
const clock = { now: () => TEST_NOW }

function realKeys(): SigningKeys {
  const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: issuers.trustDomain, CTB_ISSUER: issuers.issuer } })
  return ensureAndLoadKeys(config, TEST_NOW).keys
}

describe('keys readiness', () => {
  it('is ok for keys that sign and verify', () => {
    expect(keysReadiness(() => realKeys(), issuers, clock)()).toBe('ok')
  })

  it('reports a key that fails its self-test (an RSA key loaded for ES256)', () => {
    const keys = realKeys()
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const broken = { ...keys, scitoken: { ...keys.scitoken, privateKey, publicKey } }
    expect(keysReadiness(() => broken, issuers, clock)()).toMatch(/self-test.*rsa key/)
  })

  it('reports no signing key loaded', () => {
    const keys = realKeys()
    expect(keysReadiness(() => ({ ...keys, scitoken: undefined }) as unknown as SigningKeys, issuers, clock)()).toBe('no signing key loaded')
  })
})

/** A memory store whose commits fail while `failing` is set, as a store with a full disk would. */
class FlakyStore extends MemoryStore {
  failing = false
  protected override commitBatch(ops: WriteOp[]): void {
    if (this.failing) throw new Error('disk full')
    super.commitBatch(ops)
  }
}

describe('audit readiness', () => {
  const event = { type: 'token.issued', time: TEST_NOW, decision: 'allow' } as const

  it('a failed commit makes it not ready for the window, or until a commit succeeds', async () => {
    const store = new FlakyStore()
    expect(await auditReadiness(store, Date.now(), 30)).toBe('ok')
    store.failing = true
    await expect(store.record(event)).rejects.toThrow('disk full')
    const failedAt = store.writeHealth().lastFailure!.at
    expect(await auditReadiness(store, failedAt + 29_000, 30)).toBe('last commit failed: disk full')
    // After the window the broker goes back into rotation, so real traffic can prove the store healthy.
    expect(await auditReadiness(store, failedAt + 30_000, 30)).toBe('ok')
    store.failing = false
    await store.record(event)
    expect(await auditReadiness(store, failedAt + 1000, 30)).toBe('ok')
  })
})
