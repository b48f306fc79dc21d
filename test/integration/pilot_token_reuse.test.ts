import { startE2e } from '../support/broker_e2e.ts'
import { pilotTokenReuseContract } from './pilot_token_reuse.contract.ts'

// Two brokers on one SQLite file in one process (as serve and a second serve on a shared host would be), and
// a broker restarted on it.
pilotTokenReuseContract('sqlite', { start: () => startE2e(), replicas: true })
