// A network path to PostgreSQL that drops everything (a black hole) while a batch is inside its transaction.
// The broker's bound fires and it closes its end, but nothing of that reaches the server: its backend sits idle
// in the transaction, holding the chain-head row lock, until it learns the client is gone (server-side TCP
// keepalive: about two hours on Linux defaults). Once the network is back, every batch of every replica waits on
// that lock and is refused at the bound. The broker sets idle_in_transaction_session_timeout to its statement
// bound on its sessions (PostgreSQL docs, "Client Connection Defaults"): the server ends the orphan itself.
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { PostgresStore } from '../../src/storage/postgres_store.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

/** A loopback TCP relay to the server that, while `hole` is on, forwards nothing and closes nothing. */
function blackHole(serverPort: number) {
  let hole = false
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: serverPort })
    sockets.add(client); sockets.add(upstream)
    // Whether the hole swallowed any of this connection's bytes: its close is then lost too (the client gave
    // up on it), and the server side stays open, as the server would see it.
    let lost = false
    client.on('data', (chunk: Buffer) => { if (hole) lost = true; else upstream.write(chunk) })
    upstream.on('data', (chunk: Buffer) => { if (hole) lost = true; else client.write(chunk) })
    client.on('close', () => { sockets.delete(client); if (!hole && !lost) upstream.destroy() })
    upstream.on('close', () => { sockets.delete(upstream); client.destroy() })
    client.on('error', () => {}); upstream.on('error', () => {})
  })
  return {
    listen: () => new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))),
    set: (on: boolean) => { hole = on },
    close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }),
  }
}

const TIMEOUT_MS = 1000
const T0 = 1_800_000_000
const issued = (jti: string, exp: number): AuditEvent =>
  ({ type: 'token.issued', time: T0, requestId: `req-${jti}`, role: 'pilot', tokenKind: 'idtoken', jti, decision: 'allow', site: 'hpc-a', exp })

let server: TestPostgres
let relay: ReturnType<typeof blackHole>
beforeAll(async () => { server = await startPostgres(); relay = blackHole(server.port) })
afterAll(async () => { try { await relay?.close() } finally { await server?.stop() } })

it('a transaction orphaned by a network black hole is ended by the server within the bound, and the chain-head lock with it', async () => {
  const dsn = await server.createDatabase('orphan')
  const port = await relay.listen()
  const store = await PostgresStore.open({ dsn: dsn.replace(`:${server.port}/`, `:${port}/`), queryTimeoutMs: TIMEOUT_MS })
  const locker = new pg.Client({ connectionString: dsn })
  await locker.connect()
  const watcher = new pg.Client({ connectionString: dsn })
  await watcher.connect()
  try {
    await store.record(issued('before', T0 + 3600))
    // Hold the batch inside its transaction, past its head lock: the horizon row it raises (a later exp) is locked.
    await locker.query('BEGIN')
    await locker.query('SELECT * FROM issuance_horizon FOR UPDATE')
    const held = store.record(issued('held', T0 + 7200)).then(() => 'committed', () => 'refused')
    let waiting = false
    for (let i = 0; i < 100 && !waiting; i++) {
      const { rows } = await watcher.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO issuance_horizon%'")
      waiting = rows.length > 0
      if (!waiting) await new Promise((r) => setTimeout(r, 50))
    }
    expect(waiting).toBe(true)
    // The network drops everything; the raise completes on the server, its answer lost; the bound fires.
    relay.set(true)
    await locker.query('COMMIT')
    expect(await held).toBe('refused')
    relay.set(false)
    // The network is back. A record needs the chain-head lock the orphan held.
    const outcomes: string[] = []
    for (let i = 0; i < 6 && outcomes.at(-1) !== 'committed'; i++) {
      outcomes.push(await store.record(issued(`after-${i}`, T0 + 3600)).then(() => 'committed', () => 'refused'))
    }
    console.log(`after the black hole, bound ${TIMEOUT_MS} ms: ${outcomes.join(', ')}`)
    expect(outcomes.at(-1)).toBe('committed')
    expect((await store.verify()).ok).toBe(true)
  } finally { await locker.end().catch(() => {}); await watcher.end(); await store.close() }
}, 60_000)
