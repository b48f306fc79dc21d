// The hardest case of an audit store outage: PostgreSQL received COMMIT and committed, and the connection was
// lost before its answer came back (a reset, a failover). The broker cannot know; the store classes the lost
// connection as an outage (503 temporarily_unavailable, RFC 6749 §4.1.2.1), the pilot never got the token,
// and it retries with the same one. What the store holds then is a renewal of that token to a successor
// nobody received. Per RFC 9700 §4.14.2 and docs/pilots.md ("Renewal chains and reuse") the retry of a lost
// answer is no reuse: it is renewed, retiring the unreceived successor, and nothing is revoked.
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { PostgresStore } from '../../src/storage/postgres_store.ts'
import type { RenewalRefusalReasons } from '../../src/storage/pilot_renewals.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

/**
 * A loopback TCP relay to the server that, when armed, lets a simple-protocol COMMIT through to the server and
 * cuts the client's connection on the server's first bytes after it: the server has executed the COMMIT (its
 * answer is on the way), the client never reads that answer.
 */
function commitAnswerCutter(serverPort: number) {
  let armed = false
  const sockets = new Set<Socket>()
  const COMMIT = Buffer.from('COMMIT\0')
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: serverPort })
    sockets.add(client); sockets.add(upstream)
    let commitSent = false
    client.on('data', (chunk: Buffer) => {
      if (armed && chunk.includes(COMMIT)) commitSent = true
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (commitSent) { client.destroy(); upstream.destroy(); return }
      client.write(chunk)
    })
    const end = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream) }
    client.on('close', end); upstream.on('close', end)
    client.on('error', () => {}); upstream.on('error', () => {})
  })
  return {
    listen: () => new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))),
    arm: (on: boolean) => { armed = on },
    close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }),
  }
}

const T0 = 1_800_000_000
const END = T0 + 7200
const REASONS: RenewalRefusalReasons = { reused: 'invalid_grant: reused', stale: 'invalid_grant: stale' }
const renewedEvent = (replaces: string, successor: string, time: number): AuditEvent =>
  ({ type: 'token.renewed', time, requestId: `renew-${successor}`, role: 'pilot', tokenKind: 'idtoken', jti: successor, decision: 'allow', site: 'hpc-b', detail: { replaces } })
const refusedEvent = (time: number) => ({ type: 'token.denied' as const, time, requestId: `refuse-${time}`, role: 'pilot', decision: 'deny' as const, site: 'hpc-b', detail: { pilot: 'renew' } })

let pg: TestPostgres
let relay: ReturnType<typeof commitAnswerCutter>
let store: PostgresStore
let direct: PostgresStore
beforeAll(async () => {
  pg = await startPostgres()
  const dsn = await pg.createDatabase('lost_commit')
  relay = commitAnswerCutter(pg.port)
  const port = await relay.listen()
  store = await PostgresStore.open({ dsn: dsn.replace(`:${pg.port}/`, `:${port}/`), connectTimeoutMs: 2000 })
  direct = await PostgresStore.open({ dsn })
})
afterAll(async () => {
  try { await store?.close(); await direct?.close(); await relay?.close() } finally { await pg?.stop() }
})

const renew = (s: PostgresStore, replaces: string, successor: string, time: number) =>
  s.renewPilotToken({ replaces, expires: END }, renewedEvent(replaces, successor, time), refusedEvent(time), REASONS)

describe('a renewal whose COMMIT landed but whose answer was lost', () => {
  it('is answered as an outage, and the pilot\'s retry with the same token is renewed, not judged reuse', async () => {
    expect(await renew(store, 'p0', 'p1', T0 + 10)).toEqual({ renewed: true })
    relay.arm(true)
    const lost = await renew(store, 'p1', 'p2', T0 + 20).then(() => undefined, (e: unknown) => e)
    relay.arm(false)
    expect(lost).toBeInstanceOf(AuditStoreUnavailable)
    expect((lost as AuditStoreUnavailable).status).toBe(503)
    // The commit did land: the store holds the renewal to p2, which nobody received.
    const landed = (await direct.query({ jti: 'p2', limit: 10 })).records.map((r) => r.event.type)
    expect(landed).toEqual(['token.renewed'])
    // The pilot retries with p1, as its script does after a 503.
    expect(await renew(store, 'p1', 'p2b', T0 + 25)).toEqual({ renewed: true, supersedes: 'p2' })
    expect(await renew(store, 'p2b', 'p3', T0 + 40)).toEqual({ renewed: true })
    const events = (await direct.query({ limit: 100 })).records.map((r) => r.event)
    expect(events.filter((e) => e.type === 'token.denied')).toEqual([])
    expect(events.filter((e) => e.type === 'token.revoked')).toEqual([])
    expect((await direct.verify()).ok).toBe(true)
  })
})
