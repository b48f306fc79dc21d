import { startE2e } from '../support/broker_e2e.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { pilotTokenReuseContract } from '../integration/pilot_token_reuse.contract.ts'

// Two brokers (replicas) on one real PostgreSQL server started for this file on 127.0.0.1 (Debian package
// `postgresql`), and a broker restarted on it: reuse of a pilot token is found whichever replica renewed it.
let server: TestPostgres | undefined
pilotTokenReuseContract('postgres', {
  replicas: true,
  async start() {
    server = await startPostgres()
    const dsn = await server.createDatabase('pilot_token_reuse')
    return startE2e({ CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn })
  },
  async stop() { await server?.stop() },
})
