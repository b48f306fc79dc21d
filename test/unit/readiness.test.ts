import { generateKeyPairSync } from 'node:crypto'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { ensureAndLoadKeys, type SigningKeys } from '../../src/keys/signing_keys.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { auditReadiness, auditReadinessCheck, keysReadiness } from '../../src/readiness.ts'
import type { BrokerStore } from '../../src/storage/chained_store.ts'
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
    // Fixed words on the wire (docs/audit.md): /readyz answers without auth, and a store's message can name
    // its host, user or file.
    expect(await auditReadiness(store, failedAt + 12_400, 30)).toBe('the last audit commit failed 12 s ago')
    // After the window the broker goes back into rotation, so real traffic can prove the store healthy.
    expect(await auditReadiness(store, failedAt + 30_000, 30)).toBe('ok')
    store.failing = false
    await store.record(event)
    expect(await auditReadiness(store, failedAt + 1000, 30)).toBe('ok')
  })
})

/** A logger that keeps each line, to count what a run of probes wrote. */
function keptLog(): { log: Logger; lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> } {
  const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = []
  const keep = (level: string) => (msg: string, fields?: Record<string, unknown>) => { lines.push({ level, msg, ...(fields ? { fields } : {}) }) }
  return { log: { info: keep('info'), warn: keep('warn'), error: keep('error') }, lines }
}

describe('audit readiness says what is wrong in fixed words and logs the detail once per change', () => {
  const pgMessage = 'connect ECONNREFUSED 10.20.30.40:5432 (user ctb_writer, database audit)'

  it('a store that cannot be read: fixed words, the message only in the log', async () => {
    const store = new MemoryStore()
    store.query = () => Promise.reject(new Error(pgMessage))
    expect(await auditReadiness(store, Date.now(), 30)).toBe('the audit store cannot be read')
  })

  it('a store that does not answer: fixed words within the bound, not after the store\'s own 30 s', async () => {
    // A PostgreSQL server that stopped answering gives no error, and its query_timeout_seconds is 30 s; a
    // probe must answer quickly (the IAM part waits at most 1 s for the same reason), and an admin who
    // curls /readyz must read why rather than wait half a minute.
    const store = new MemoryStore()
    store.query = () => new Promise(() => {})
    const started = performance.now()
    expect(await auditReadiness(store, Date.now(), 30, 50)).toBe('the audit store did not answer in time')
    expect(performance.now() - started).toBeLessThan(2000)
  }, 3000)

  it('a stopped writer: fixed words, whatever the thread died of', async () => {
    const store = new MemoryStore()
    store.writeHealth = () => ({ stopped: 'audit writer thread failed: SQLITE_IOERR /var/lib/ctb/audit.db' })
    expect(await auditReadiness(store, Date.now(), 30)).toBe('the audit writer thread has stopped')
  })

  it('logs the store\'s message when the answer turns bad, not again per probe, and once when it is ok again', async () => {
    const store = new MemoryStore()
    let failing = true
    const query = store.query.bind(store)
    store.query = (q) => (failing ? Promise.reject(new Error(pgMessage)) : query(q))
    const { log, lines } = keptLog()
    const check = auditReadinessCheck(store as BrokerStore, log, () => Date.now())
    for (let i = 0; i < 3; i++) expect(await check()).toBe('the audit store cannot be read')
    expect(lines).toEqual([{ level: 'error', msg: 'audit not ready: the audit store cannot be read', fields: { error: pgMessage } }])
    failing = false
    for (let i = 0; i < 3; i++) expect(await check()).toBe('ok')
    expect(lines.slice(1)).toEqual([{ level: 'info', msg: 'audit ready again' }])
  })

  it('logs a failed commit once while its age in the answer grows, and a new cause when it changes', async () => {
    const store = new FlakyStore()
    store.failing = true
    await expect(store.record({ type: 'token.issued', time: TEST_NOW, decision: 'allow' })).rejects.toThrow('disk full')
    const at = store.writeHealth().lastFailure!.at
    let now = at + 1000
    const { log, lines } = keptLog()
    const check = auditReadinessCheck(store, log, () => now)
    expect(await check()).toBe('the last audit commit failed 1 s ago')
    now = at + 5000
    expect(await check()).toBe('the last audit commit failed 5 s ago')
    expect(lines).toEqual([{ level: 'error', msg: 'audit not ready: the last audit commit failed', fields: { error: 'disk full' } }])
    store.writeHealth = () => ({ stopped: 'audit writer thread has stopped' })
    expect(await check()).toBe('the audit writer thread has stopped')
    expect(await check()).toBe('the audit writer thread has stopped')
    expect(lines.slice(1)).toEqual([{ level: 'error', msg: 'audit not ready: the audit writer thread has stopped', fields: { error: 'audit writer thread has stopped' } }])
  })

  it('does not log a verdict that a later probe has already overtaken (concurrent probes)', async () => {
    // Two load balancers probe at once: the first one's read waits on the store, meanwhile the writer thread
    // stops and the second probe says so at once; then the first read answers. The first answer, arriving
    // last, is older news: it must not be the last word in the log, which would say the store is ready.
    const store = new MemoryStore()
    const pending: Array<{ resolve: () => void }> = []
    const query = store.query.bind(store)
    store.query = (q) => new Promise((resolve) => { pending.push({ resolve: () => resolve(query(q)) }) })
    const { log, lines } = keptLog()
    const check = auditReadinessCheck(store as BrokerStore, log, () => Date.now())
    const first = check()
    store.writeHealth = () => ({ stopped: 'audit writer thread has stopped' })
    expect(await check()).toBe('the audit writer thread has stopped')
    pending[0]!.resolve()
    expect(await first).toBe('ok')
    expect(lines).toEqual([{ level: 'error', msg: 'audit not ready: the audit writer thread has stopped', fields: { error: 'audit writer thread has stopped' } }])
  })

  it('holds at most one read of a store that does not answer, however many probes come', async () => {
    // On PostgreSQL a read given up by the probe keeps its pool connection until query_timeout_seconds: a
    // read per probe (load balancers every few seconds) would take the whole pool (4 by default) from the
    // token requests. A probe that finds a read in flight waits on that one instead.
    const store = new MemoryStore()
    const pending: Array<() => void> = []
    const query = store.query.bind(store)
    let reads = 0
    store.query = (q) => { reads++; return new Promise((resolve) => { pending.push(() => resolve(query(q))) }) }
    const check = auditReadinessCheck(store as BrokerStore, keptLog().log, () => Date.now(), 30, 20)
    const answers = await Promise.all([check(), check(), check()])
    answers.push(await check(), await check())
    expect(answers).toEqual(Array(5).fill('the audit store did not answer in time'))
    expect(reads).toBe(1)
    // The read answers (the server is back): the next probe reads afresh.
    pending[0]!()
    await new Promise((r) => setImmediate(r))
    const next = check()
    expect(reads).toBe(2)
    pending[1]!()
    expect(await next).toBe('ok')
  })
})
