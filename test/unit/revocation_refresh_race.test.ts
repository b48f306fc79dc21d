// A refresh whose reads began before a revocation of this broker committed must not, on finishing, replace what
// the service holds and enforces with a list that lacks a revocation committed while it was still running. The
// admin was answered that revocation as made (and, when its own re-read failed, "enforced from memory").
import { expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import type { Logger } from '../../src/lib/logger.ts'
import type { NewRevocation, Revocation } from '../../src/revocation/revocation.ts'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const NOW = 1_800_000_000

/**
 * roleGenerations answers with the table as it was when called, but only once `release` is called for that read:
 * a read that began before a commit and returns after it, as a PostgreSQL query's snapshot does.
 */
class GatedStore extends MemoryStore {
  gateGenerations = false
  failReadsAfterCommit = false
  readonly #waiting: Array<() => void> = []
  #failing = false
  override async roleGenerations(): Promise<Map<string, number>> {
    if (this.#failing) throw new AuditStoreUnavailable(new Error('database is locked'), 'read')
    const at = await super.roleGenerations()
    if (!this.gateGenerations) return at
    await new Promise<void>((resolve) => this.#waiting.push(resolve))
    return at
  }
  override async listRevocations(options?: { activeAt?: number }): Promise<Revocation[]> {
    if (this.#failing) throw new AuditStoreUnavailable(new Error('database is locked'), 'read')
    return super.listRevocations(options)
  }
  override async revoke(rev: NewRevocation, event: AuditEvent): Promise<Revocation> {
    const done = await super.revoke(rev, event)
    if (this.failReadsAfterCommit) this.#failing = true
    return done
  }
  waiting(): number { return this.#waiting.length }
  release(): void { this.#waiting.shift()!() }
  answerAgain(): void { this.#failing = false; this.failReadsAfterCommit = false }
}

async function settle(until: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !until(); i++) await new Promise((r) => setImmediate(r))
  expect(until()).toBe(true)
}

function running() {
  const store = new GatedStore()
  const errors: string[] = []
  const log: Logger = { info() {}, warn() {}, error(msg, fields) { errors.push(`${msg} ${JSON.stringify(fields)}`) } }
  const svc = new RevocationService({
    store, clock: { now: () => NOW }, log, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['cloud-a']) }),
  })
  return { store, svc, errors }
}

for (const reread of ['succeeds', 'fails'] as const) {
  it(`a jti revocation committed while an older refresh re-reads a role generation stays enforced (its re-read ${reread})`, async () => {
    const { store, svc, errors } = running()
    await svc.refresh()
    // A periodic refresh begins: it reads the generations before the role revocation below commits.
    store.gateGenerations = true
    const periodic = svc.refresh()
    await settle(() => store.waiting() === 1)
    store.gateGenerations = false
    const role = await svc.revoke({ kind: 'role', value: 'pilot' }, { principal: 'admin' })
    // The periodic refresh goes on: the role revocation's generation is newer than its read, so it reads the
    // generations once more (refresh's guard against a false tampering alarm), and waits there.
    store.gateGenerations = true
    store.release()
    await settle(() => store.waiting() === 1)
    store.gateGenerations = false
    store.failReadsAfterCommit = reread === 'fails'
    const jti = await svc.revoke({ kind: 'jti', value: 'j-1', exp: NOW + 600 }, { principal: 'admin' })
    expect(svc.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(true)
    store.answerAgain()
    store.release()
    await periodic
    // Committed and answered as made: enforced, and both entries are in force.
    expect(svc.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(true)
    expect(svc.inForce().byKind.get('jti')).toBe(1)
    expect(svc.generationOf('pilot')).toBe(role.gen)
    expect(jti.id).toBeGreaterThan(role.id)
    expect(errors).toEqual([])
  })
}

/** listRevocations answers with the table as it was when called; the reads named by `gate` wait for `release`. */
class GatedListStore extends MemoryStore {
  gate: 'none' | 'active' | 'whole' = 'none'
  readonly #waiting: Array<() => void> = []
  override async listRevocations(options?: { activeAt?: number }): Promise<Revocation[]> {
    const at = await super.listRevocations(options)
    const gated = this.gate === 'active' ? options?.activeAt !== undefined : this.gate === 'whole' ? options?.activeAt === undefined : false
    if (gated) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    return at
  }
  waiting(): number { return this.#waiting.length }
  release(): void { this.#waiting.shift()!() }
}

it('a revocation committed while an older refresh reads the whole table raises no tampering alarm', async () => {
  const store = new GatedListStore()
  const errors: string[] = []
  const log: Logger = { info() {}, warn() {}, error(msg, fields) { errors.push(`${msg} ${JSON.stringify(fields)}`) } }
  const svc = new RevocationService({
    store, clock: { now: () => NOW }, log, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['cloud-a']) }),
  })
  await svc.refresh()
  // A periodic refresh reads the active entries before the first revocation commits.
  store.gate = 'active'
  const periodic = svc.refresh()
  await settle(() => store.waiting() === 1)
  store.gate = 'none'
  await svc.revoke({ kind: 'jti', value: 'j-1', exp: NOW + 600 }, { principal: 'admin' })
  // It finds that entry held but not in its read, and reads the whole table to tell why: that read waits.
  store.gate = 'whole'
  store.release()
  await settle(() => store.waiting() === 1)
  store.gate = 'none'
  // A second revocation commits meanwhile: in the table, and held, after the whole-table read was taken.
  const second = await svc.revoke({ kind: 'jti', value: 'j-2', exp: NOW + 600 }, { principal: 'admin' })
  store.release()
  await periodic
  expect((await store.listRevocations()).map((r) => r.id)).toContain(second.id)
  // Nothing changed behind the broker: no alarm, both enforced.
  expect(errors).toEqual([])
  expect(svc.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(true)
  expect(svc.isRevoked({ jti: 'j-2', iat: NOW - 10 })).toBe(true)
  // Deleted behind the broker now: that one is reported (a false report before would have hidden it, same words).
  const { revocations } = store.rawRevocations()
  revocations.splice(revocations.findIndex((r) => r.id === second.id), 1)
  await svc.refresh()
  expect(errors).toHaveLength(1)
  expect(errors[0]).toContain(`revocation ${second.id} (jti \\"j-2\\") is gone from the table`)
  expect(svc.isRevoked({ jti: 'j-2', iat: NOW - 10 })).toBe(true)
})

it('a revocation committed while an older refresh reads the active entries again raises no alarm', async () => {
  const store = new GatedListStore()
  const errors: string[] = []
  const log: Logger = { info() {}, warn() {}, error(msg, fields) { errors.push(`${msg} ${JSON.stringify(fields)}`) } }
  const svc = new RevocationService({
    store, clock: { now: () => NOW }, log, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['cloud-a']) }),
  })
  await svc.refresh()
  store.gate = 'active'
  const periodic = svc.refresh()
  await settle(() => store.waiting() === 1)
  store.gate = 'none'
  await svc.revoke({ kind: 'jti', value: 'j-1', exp: NOW + 600 }, { principal: 'admin' })
  // The entry is in the whole table, unlifted: the refresh reads the active entries once more, and waits there.
  store.gate = 'active'
  store.release()
  await settle(() => store.waiting() === 1)
  store.gate = 'none'
  await svc.revoke({ kind: 'jti', value: 'j-2', exp: NOW + 600 }, { principal: 'admin' })
  store.release()
  await periodic
  expect(errors).toEqual([])
  expect(svc.isRevoked({ jti: 'j-2', iat: NOW - 10 })).toBe(true)
})

it('a role revocation committed while an older refresh reads the generations again raises no alarm', async () => {
  const store = new GatedStore()
  const errors: string[] = []
  const log: Logger = { info() {}, warn() {}, error(msg, fields) { errors.push(`${msg} ${JSON.stringify(fields)}`) } }
  const svc = new RevocationService({
    store, clock: { now: () => NOW }, log, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot', 'analysis']), sites: new Set(['cloud-a']) }),
  })
  await svc.refresh()
  store.gateGenerations = true
  const periodic = svc.refresh()
  await settle(() => store.waiting() === 1)
  store.gateGenerations = false
  await svc.revoke({ kind: 'role', value: 'pilot' }, { principal: 'admin' })
  // pilot's generation is newer than the refresh's read: it reads the generations again, and waits there.
  store.gateGenerations = true
  store.release()
  await settle(() => store.waiting() === 1)
  store.gateGenerations = false
  const analysis = await svc.revoke({ kind: 'role', value: 'analysis' }, { principal: 'admin' })
  store.release()
  await periodic
  expect(errors).toEqual([])
  // docs/revocation.md: a role revocation raises the generation from 1 to 2.
  expect(analysis.gen).toBe(2)
  expect(svc.generationOf('analysis')).toBe(2)
  expect(svc.generationOf('pilot')).toBe(2)
})
