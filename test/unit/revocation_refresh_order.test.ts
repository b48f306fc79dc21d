// Two refreshes of one broker overlap (a periodic one, and the read behind a revoke or `revoke condor`): the one
// whose read began last is the one in force, whichever finishes last. An older read finishing late put back what
// another replica had changed since (a lift undone here until the next refresh) and moved the read time of the
// list in force (ctb_revocations_read_age_seconds) back to its own.
import { expect, it } from 'vitest'
import type { Logger } from '../../src/lib/logger.ts'
import type { Revocation } from '../../src/revocation/revocation.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const NOW = 1_800_000_000

/** listRevocations of the active entries answers with the table as it was when called, once `release(i)` lets it. */
class HeldReadStore extends MemoryStore {
  gate = false
  readonly #waiting: Array<(() => void) | undefined> = []
  override async listRevocations(options?: { activeAt?: number }): Promise<Revocation[]> {
    const at = await super.listRevocations(options)
    if (this.gate && options?.activeAt !== undefined) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    return at
  }
  /** Reads held and not yet released. */
  waiting(): number { return this.#waiting.filter((w) => w !== undefined).length }
  /** Lets the i-th held read (in the order they began) answer. */
  release(i: number): void { const w = this.#waiting[i]!; this.#waiting[i] = undefined; w() }
}

async function settle(until: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !until(); i++) await new Promise((r) => setImmediate(r))
  expect(until()).toBe(true)
}

function replicas() {
  const store = new HeldReadStore()
  let now = NOW
  const errors: string[] = []
  const log: Logger = { info() {}, warn() {}, error(msg, fields) { errors.push(`${msg} ${JSON.stringify(fields)}`) } }
  const make = () => new RevocationService({
    store, clock: { now: () => now }, log, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['cloud-a']) }),
  })
  return { store, broker: make(), other: make(), errors, advance: (s: number) => { now += s } }
}

/** Begins a refresh of `svc` whose active read is held; resolves once that read has been taken. */
async function heldRefresh(store: HeldReadStore, svc: RevocationService): Promise<{ done: Promise<void> }> {
  const before = store.waiting()
  store.gate = true
  const done = svc.refresh()
  await settle(() => store.waiting() === before + 1)
  store.gate = false
  return { done }
}

it('an older refresh finishing after a newer one does not put back an entry another replica lifted', async () => {
  const { store, broker, other, errors, advance } = replicas()
  const rev = await other.revoke({ kind: 'jti', value: 'j-1', exp: NOW + 600 }, { principal: 'admin' })
  await broker.refresh()
  expect(broker.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(true)
  const { done: older } = await heldRefresh(store, broker)
  await other.lift(rev.id, {}, { principal: 'admin' })
  advance(5)
  const { done: newer } = await heldRefresh(store, broker)
  store.release(1)
  await newer
  expect(broker.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(false)
  store.release(0)
  await older
  // Lifted by the other replica, which the newer read saw: not revoked here either.
  expect(broker.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(false)
  expect(broker.inForce().byKind.get('jti') ?? 0).toBe(0)
  expect(broker.inForce().readAt).toBe(NOW + 5)
  expect(errors).toEqual([])
})

it('an older refresh finishing after a newer one keeps the entry another replica committed between their reads', async () => {
  const { store, broker, other, errors, advance } = replicas()
  await broker.refresh()
  const { done: older } = await heldRefresh(store, broker)
  await other.revoke({ kind: 'jti', value: 'j-2', exp: NOW + 600 }, { principal: 'admin' })
  advance(5)
  const { done: newer } = await heldRefresh(store, broker)
  store.release(1)
  await newer
  expect(broker.isRevoked({ jti: 'j-2', iat: NOW - 10 })).toBe(true)
  store.release(0)
  await older
  expect(broker.isRevoked({ jti: 'j-2', iat: NOW - 10 })).toBe(true)
  expect(broker.inForce().byKind.get('jti')).toBe(1)
  // The read in force is the newer one: the read-age gauge must not go back to the older read's time.
  expect(broker.inForce().readAt).toBe(NOW + 5)
  expect(errors).toEqual([])
})

it('refreshes finishing in the order they began each replace the list', async () => {
  const { store, broker, other, errors, advance } = replicas()
  await broker.refresh()
  const { done: first } = await heldRefresh(store, broker)
  await other.revoke({ kind: 'jti', value: 'j-3', exp: NOW + 600 }, { principal: 'admin' })
  advance(5)
  const { done: second } = await heldRefresh(store, broker)
  store.release(0)
  await first
  expect(broker.isRevoked({ jti: 'j-3', iat: NOW - 10 })).toBe(false)
  expect(broker.inForce().readAt).toBe(NOW)
  store.release(1)
  await second
  expect(broker.isRevoked({ jti: 'j-3', iat: NOW - 10 })).toBe(true)
  expect(broker.inForce().readAt).toBe(NOW + 5)
  expect(errors).toEqual([])
})
