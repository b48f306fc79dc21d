// This broker lifts an entry while a refresh of its own is reading the table, and the re-read after the lift fails
// (an SQLite lock, a PostgreSQL read cut off). The lift is answered as made and, by design, enforced from what is
// held (#held, which the lift updated). The refresh that began before the lift then finished: its read still shows
// the entry active, and, being newer than any read applied, it put the entry back in #held and the snapshot, so the
// lifted token was refused again until the next refresh.
import { expect, it } from 'vitest'
import type { Logger } from '../../src/lib/logger.ts'
import type { Revocation } from '../../src/revocation/revocation.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const NOW = 1_800_000_000

/** Active reads are held while `gate` is set, until released; `failNext` makes the next active read throw. */
class OverlapStore extends MemoryStore {
  gate = false
  failNext = false
  readonly #waiting: Array<() => void> = []
  override async listRevocations(options?: { activeAt?: number }): Promise<Revocation[]> {
    if (options?.activeAt !== undefined && this.failNext) {
      this.failNext = false
      throw new Error('database is locked')
    }
    const at = await super.listRevocations(options)
    if (this.gate && options?.activeAt !== undefined) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    return at
  }
  waiting(): number { return this.#waiting.length }
  releaseAll(): void { for (const w of this.#waiting.splice(0)) w() }
}

async function settle(until: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !until(); i++) await new Promise((r) => setImmediate(r))
  expect(until()).toBe(true)
}

it('a refresh begun before a lift whose re-read failed does not put the lifted entry back', async () => {
  const store = new OverlapStore()
  const warnings: string[] = []
  const errors: string[] = []
  const log: Logger = { info() {}, warn(msg) { warnings.push(msg) }, error(msg) { errors.push(msg) } }
  const broker = new RevocationService({
    store, clock: { now: () => NOW }, log, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['cloud-a']) }),
  })
  await broker.refresh()
  const rev = await broker.revoke({ kind: 'jti', value: 'j-1', exp: NOW + 600 }, { principal: 'admin' })
  expect(broker.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(true)

  // A periodic refresh takes its read of the active entries (j-1 among them) and is held there.
  store.gate = true
  const older = broker.refresh()
  await settle(() => store.waiting() === 1)
  store.gate = false

  store.failNext = true
  await broker.lift(rev.id, {}, { principal: 'admin' })
  expect(warnings.some((w) => w.includes('re-reading the revocations failed'))).toBe(true)
  expect(broker.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(false)

  store.releaseAll()
  await older
  // Lifted by this broker after that read began: the read cannot speak for it.
  expect(broker.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(false)
  expect(broker.inForce().byKind.get('jti') ?? 0).toBe(0)
  // And the next refresh, which begins after the lift, agrees, with nothing reported as changed behind the broker.
  await broker.refresh()
  expect(broker.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(false)
  expect(errors).toEqual([])
})
