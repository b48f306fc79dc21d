import { expect, it } from 'vitest'
import { fixedClock } from '../../src/lib/clock.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { CLAIM_GENERATION, CLAIM_ROLE, CLAIM_SITE } from '../../src/revocation/revocation.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

// A running broker re-reads the revocations table every few seconds without checking it against the audit
// chain (that is the start-up's and audit verify's job). Rows are never deleted and only a lift changes one,
// so an entry that vanishes, or weakens, between two reads was changed behind the broker.
const NOW = 1_800_000_000

function running(clock = fixedClock(NOW)) {
  const store = new MemoryStore()
  const errors: string[] = []
  const log: Logger = { info() {}, warn() {}, error(msg, fields) { errors.push(`${msg} ${JSON.stringify(fields)}`) } }
  const svc = new RevocationService({
    store, clock, log, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['cloud-a', 'cloud-b']) }),
    knownIssuers: () => new Set(),
  })
  return { store, svc, errors }
}

const siteToken = (site: string) => ({ sub: 'startd@ep.example.org', iat: NOW - 10, [CLAIM_SITE]: site })
const pilotToken = { sub: 'pilot@pool.example.org', iat: NOW - 10, [CLAIM_ROLE]: 'pilot', [CLAIM_GENERATION]: 1 }

it('keeps enforcing a revocation whose row is deleted, or whose until is cut, behind the running broker', async () => {
  const { store, svc, errors } = running()
  const a = await svc.revoke({ kind: 'site', value: 'cloud-a' }, { principal: 'admin' })
  const b = await svc.revoke({ kind: 'site', value: 'cloud-b' }, { principal: 'admin' })
  await svc.revoke({ kind: 'role', value: 'pilot' }, { principal: 'admin' })
  expect([svc.isRevoked(siteToken('cloud-a')), svc.isRevoked(siteToken('cloud-b')), svc.isRevoked(pilotToken)]).toEqual([true, true, true])

  const { revocations, generations } = store.rawRevocations()
  revocations.splice(revocations.findIndex((r) => r.id === a.id), 1)
  revocations.find((r) => r.id === b.id)!.until = NOW - 1
  generations.delete('pilot')
  await svc.refresh()

  expect([svc.isRevoked(siteToken('cloud-a')), svc.isRevoked(siteToken('cloud-b')), svc.isRevoked(pilotToken)]).toEqual([true, true, true])
  const { expr } = await svc.condorExpression()
  expect(expr).toContain('ctb_site =?= "cloud-a"')
  expect(expr).toContain('ctb_site =?= "cloud-b"')
  expect(expr).toContain('ctb_role =?= "pilot" && ctb_gen < 2')
  expect(errors).toEqual([
    `the revocations table changed behind the broker; still enforcing what it held (run "audit verify") ${JSON.stringify({ changes: [
      `revocation ${a.id} (site "cloud-a") is gone from the table`,
      `revocation ${b.id} (site "cloud-b") ends at ${NOW - 1} in the table, ${b.until} before`,
      'role pilot is at generation none in the table, 2 before',
    ] })}`,
  ])
})

it('lets go of a revocation that was lifted, or that expired', async () => {
  let now = NOW
  const { store, svc, errors } = running({ now: () => now })
  const a = await svc.revoke({ kind: 'site', value: 'cloud-a' }, { principal: 'admin' })
  await svc.revoke({ kind: 'jti', value: 'j-1', exp: NOW + 5 }, { principal: 'admin' })
  expect([svc.isRevoked(siteToken('cloud-a')), svc.isRevoked({ jti: 'j-1', iat: NOW - 10 })]).toEqual([true, true])
  // Lifted by another process (the CLI, another replica): only the table changes under this one.
  store.rawRevocations().revocations.find((r) => r.id === a.id)!.liftedAt = NOW
  now = NOW + 10
  await svc.refresh()
  expect([svc.isRevoked(siteToken('cloud-a')), svc.isRevoked({ jti: 'j-1', iat: NOW - 10 })]).toEqual([false, false])
  expect((await svc.condorExpression()).clauses).toBe(0)
  expect(errors).toEqual([])
})

// SQLite hands out the highest id + 1 (INTEGER PRIMARY KEY without AUTOINCREMENT): once the newest row is
// deleted by hand, the next revocation gets its id. Held by id, the deleted entry took the new one's place,
// and the new revocation, properly made and recorded, was not enforced.
it('enforces both the deleted entry it held and a new revocation that reuses its id', async () => {
  const { store, svc, errors } = running()
  const a = await svc.revoke({ kind: 'site', value: 'cloud-a' }, { principal: 'admin' })
  const { revocations } = store.rawRevocations()
  revocations.splice(revocations.findIndex((r) => r.id === a.id), 1)
  const b = await svc.revoke({ kind: 'site', value: 'cloud-b' }, { principal: 'admin' })
  expect(b.id).toBe(a.id)
  expect([svc.isRevoked(siteToken('cloud-a')), svc.isRevoked(siteToken('cloud-b'))]).toEqual([true, true])
  await svc.refresh()
  expect([svc.isRevoked(siteToken('cloud-a')), svc.isRevoked(siteToken('cloud-b'))]).toEqual([true, true])
  const { expr } = await svc.condorExpression()
  expect(expr).toContain('ctb_site =?= "cloud-a"')
  expect(expr).toContain('ctb_site =?= "cloud-b"')
  expect(errors).toEqual([
    `the revocations table changed behind the broker; still enforcing what it held (run "audit verify") ${JSON.stringify({ changes: [
      `revocation ${a.id} (site "cloud-a") differs in the table: value "cloud-b", "cloud-a" before`,
    ] })}`,
  ])
})

// A trigger on the revocations table (an insider with only database access) can delete or lift each new
// row in the transaction that inserts it. The broker answered the revocation as made, then read the table
// to refresh and held nothing: the entry was never enforced, until a restart refused to start.
it('enforces the revocation it just committed even when its row is gone by the time it re-reads the table', async () => {
  const { store, svc, errors } = running()
  const revoke = store.revoke.bind(store)
  store.revoke = async (rev, event) => {
    const stored = await revoke(rev, event)
    const { revocations, generations } = store.rawRevocations()
    revocations.splice(revocations.findIndex((r) => r.id === stored.id), 1)
    if (stored.kind === 'role') generations.delete(stored.value)
    return stored
  }
  const a = await svc.revoke({ kind: 'site', value: 'cloud-a' }, { principal: 'admin' })
  await svc.revoke({ kind: 'role', value: 'pilot' }, { principal: 'admin' })
  expect([svc.isRevoked(siteToken('cloud-a')), svc.isRevoked(pilotToken)]).toEqual([true, true])
  expect((await svc.condorExpression()).expr).toContain('ctb_site =?= "cloud-a"')
  const logged = errors.join('\n')
  expect(logged).toContain(JSON.stringify(`revocation ${a.id} (site "cloud-a") is gone from the table`))
  expect(logged).toContain(JSON.stringify('role pilot is at generation none in the table, 2 before'))
})
