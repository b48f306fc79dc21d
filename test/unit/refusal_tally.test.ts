import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { MAX_TRACKED_CLIENTS, RefusalTally, TOP_CLIENTS } from '../../src/audit/refusal_tally.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { addressKeyer } from '../../src/ratelimit/address_key.ts'

function tally(options: { busy?: boolean; failing?: boolean } = {}) {
  const events: AuditEvent[] = []
  let now = 1_800_000_000
  const state = { busy: options.busy ?? false, failing: options.failing ?? false }
  const t = new RefusalTally({
    audit: { record: async (e) => { if (state.failing) throw new Error('disk full'); events.push(e) } },
    clock: { now: () => now },
    log: silentLogger,
    busy: () => state.busy,
  })
  return { t, events, state, tick: (s: number) => { now += s } }
}

describe('RefusalTally', () => {
  it('writes nothing until flushed, then one aggregate record, then nothing when there is nothing new', async () => {
    const { t, events, tick } = tally()
    t.note('invalid_grant', '192.0.2.1')
    tick(7)
    t.note('invalid_grant', '192.0.2.1')
    t.note('invalid_request', '192.0.2.2')
    t.note('invalid_request', undefined)
    expect(events).toHaveLength(0)
    await t.flush()
    expect(events).toEqual([{
      type: 'token.denied.aggregate', time: 1_800_000_007, decision: 'deny', reason: '4 unauthenticated requests refused',
      detail: {
        count: 4, byError: { invalid_grant: 2, invalid_request: 2 }, first: 1_800_000_000, last: 1_800_000_007,
        topClients: [{ address: '192.0.2.1', count: 2 }, { address: '192.0.2.2', count: 1 }], otherClients: 1,
      },
    }])
    await t.flush()
    expect(events).toHaveLength(1)
  })

  it('skips a flush while the queue is busy and carries the counts into the next one', async () => {
    const { t, events, state } = tally({ busy: true })
    t.note('invalid_grant', '192.0.2.1')
    await t.flush()
    expect(events).toHaveLength(0)
    t.note('invalid_grant', '192.0.2.1')
    state.busy = false
    await t.flush()
    expect(events.map((e) => e.detail?.count)).toEqual([2])
  })

  it('keeps the counts when the store refuses, and writes them with the next flush', async () => {
    const { t, events, state } = tally({ failing: true })
    t.note('invalid_grant', '192.0.2.1')
    await t.flush()
    expect(t.pending).toBe(1)
    state.failing = false
    t.note('invalid_request', '192.0.2.3')
    await t.flush()
    expect(events).toHaveLength(1)
    expect(events[0]!.detail).toMatchObject({ count: 2, byError: { invalid_grant: 1, invalid_request: 1 } })
  })

  it('bounds memory: beyond MAX_TRACKED_CLIENTS addresses refusals are only counted, and the record names TOP_CLIENTS', async () => {
    const { t, events } = tally()
    const n = MAX_TRACKED_CLIENTS + 500
    for (let i = 0; i < n; i++) t.note('invalid_grant', `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`)
    await t.flush()
    const d = events[0]!.detail as { count: number; topClients: unknown[]; otherClients: number }
    expect(d.count).toBe(n)
    expect(d.topClients).toHaveLength(TOP_CLIENTS)
    expect(d.otherClients).toBe(n - TOP_CLIENTS)
  })

  it('the stop function of start() writes what is left, even while busy (shutdown)', async () => {
    const { t, events } = tally({ busy: true })
    const stop = t.start(3600)
    t.note('unsupported_grant_type', undefined)
    await stop()
    expect(events.map((e) => e.detail?.count)).toEqual([1])
  })
  // RFC 6177: one IPv6 end site holds at least a /64, so one host can send each refused request from a new
  // address. Counted per address, its flood would fill every tracked slot with count-1 entries and push
  // any other source (here 192.0.2.9) out of topClients into otherClients.
  it('counts an IPv6 client by its network, so rotating addresses neither hides it nor the others', async () => {
    const events: AuditEvent[] = []
    const t = new RefusalTally({
      audit: { record: async (e) => { events.push(e) } }, clock: { now: () => 1_800_000_000 }, log: silentLogger, clientOf: addressKeyer(64),
    })
    const flood = 2 * MAX_TRACKED_CLIENTS
    for (let i = 1; i <= flood; i++) t.note('invalid_grant', `2001:db8::${i.toString(16)}`)
    for (let i = 0; i < 50; i++) t.note('invalid_grant', '192.0.2.9')
    await t.flush()
    expect((events[0]!.detail as { topClients: unknown }).topClients).toEqual([
      { address: '2001:db8:0:0:0:0:0:0/64', count: flood },
      { address: '192.0.2.9', count: 50 },
    ])
  })
})
