import { setTimeout as sleep } from 'node:timers/promises'
import { expect, it } from 'vitest'
import type { Logger } from '../../src/lib/logger.ts'
import { boundStoreStop } from '../../src/storage/store_stop_bound.ts'

// The bound serve's stop puts on a store whose database could hold its close (PostgreSQL): past it the
// store cuts its connections and one warn line says what was left. A close that ends in time cuts nothing.
function recordingLog() {
  const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = []
  const log: Logger = {
    info: (msg, fields) => { lines.push({ level: 'info', msg, ...(fields ? { fields } : {}) }) },
    warn: (msg, fields) => { lines.push({ level: 'warn', msg, ...(fields ? { fields } : {}) }) },
    error: (msg, fields) => { lines.push({ level: 'error', msg, ...(fields ? { fields } : {}) }) },
  }
  return { log, lines }
}

it('past the bound the store abandons what waits on its database, once, and one warn line gives the counts', async () => {
  let calls = 0
  const { log, lines } = recordingLog()
  const disarm = boundStoreStop({ abandon: () => { calls++; return { connections: 2, unwritten: 3 } } }, log, 20)
  await sleep(80)
  expect(calls).toBe(1)
  expect(disarm()).toEqual({ connections: 2, unwritten: 3 })
  expect(lines).toHaveLength(1)
  expect(lines[0]).toMatchObject({ level: 'warn', fields: { connections: 2, unwritten: 3 } })
  expect(lines[0]!.msg).toMatch(/abandoned 2 connection\(s\).* 3 write\(s\)/)
})

it('a close that ends within the bound abandons nothing and logs nothing', async () => {
  let calls = 0
  const { log, lines } = recordingLog()
  const disarm = boundStoreStop({ abandon: () => { calls++; return { connections: 1, unwritten: 0 } } }, log, 20)
  expect(disarm()).toBeUndefined()
  await sleep(80)
  expect(calls).toBe(0)
  expect(lines).toEqual([])
})

it('a store with nothing to cut (SQLite, memory) is not bounded', async () => {
  const { log, lines } = recordingLog()
  const disarm = boundStoreStop({}, log, 1)
  await sleep(30)
  expect(disarm()).toBeUndefined()
  expect(lines).toEqual([])
})
