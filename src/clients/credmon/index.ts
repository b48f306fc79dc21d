import { fetch as undiciFetch } from 'undici'
import { caAgent } from '../../lib/ca_agent.ts'
import { systemClock } from '../../lib/clock.ts'
import type { Logger } from '../../lib/logger.ts'
import { readSecretFile } from '../../lib/secure_file.ts'
import { brokerClient, type Fetch } from './client.ts'
import { nodeCredDirFs } from './cred_dir.ts'
import { Credmon, SCAN_INTERVAL_SECONDS } from './credmon.ts'
import { startCredmonLoop, type CredmonLoop } from './loop.ts'
import type { UseFormat } from './use_file.ts'

export { Credmon, CREDMON_COMPLETE, PID_FILE, SCAN_INTERVAL_SECONDS, USE_FILE_MODE } from './credmon.ts'
export { startCredmonLoop } from './loop.ts'
export { brokerClient } from './client.ts'
export { nodeCredDirFs } from './cred_dir.ts'
export { USE_FORMATS, type UseFormat } from './use_file.ts'

/** Where `use feature:OAUTH` puts the credential directory. */
export const DEFAULT_CRED_DIR = '/var/lib/condor/oauth_credentials'
/** The credd's IDTOKEN in HTCondor's system token directory (root daemons read tokens from there). */
export const DEFAULT_TOKEN_FILE = '/etc/condor/tokens.d/credd'

export interface CredmonSettings {
  credDir: string
  brokerUrl: string
  providers: string[]
  tokenFile: string
  /** PEM bundle trusted for the broker's certificate instead of the system store. */
  caFile?: string
  useFormat: UseFormat
  minimumSeconds?: number
  intervalSeconds?: number
}

/** The production fetch: undici with its own dispatcher, so a private CA applies to this client only. */
export function credmonFetch(caFile?: string): Fetch {
  const dispatcher = caAgent(caFile, { connectMs: 2_000 })
  return (url, init) => undiciFetch(url, { ...(init as object), dispatcher } as Parameters<typeof undiciFetch>[1]) as unknown as Promise<Response>
}

/** Builds the credmon from settings with the real clock, filesystem and network. */
export function createCredmon(s: CredmonSettings, log: Logger, fetch: Fetch = credmonFetch(s.caFile)): Credmon {
  const client = brokerClient({ brokerUrl: s.brokerUrl, credential: () => readSecretFile(s.tokenFile).toString('utf8'), fetch })
  return new Credmon(
    { credDir: s.credDir, providers: s.providers, brokerUrl: s.brokerUrl, useFormat: s.useFormat, ...(s.minimumSeconds !== undefined ? { minimumSeconds: s.minimumSeconds } : {}) },
    { fs: nodeCredDirFs, clock: systemClock, client, log },
  )
}

/** Runs until SIGTERM/SIGINT: writes `pid`, scans every interval and on SIGHUP. */
export async function runCredmon(s: CredmonSettings, log: Logger): Promise<void> {
  const credmon = createCredmon(s, log)
  credmon.begin(process.pid)
  const loop: CredmonLoop = startCredmonLoop(credmon, s.intervalSeconds ?? SCAN_INTERVAL_SECONDS, log)
  const onHup = () => loop.wake()
  const onStop = () => { void loop.stop() }
  process.on('SIGHUP', onHup)
  process.on('SIGTERM', onStop)
  process.on('SIGINT', onStop)
  log.info('credmon: started', { cred_dir: s.credDir, broker: new URL(s.brokerUrl).origin, providers: s.providers.join(',') })
  try {
    await loop.done
  } finally {
    process.off('SIGHUP', onHup)
    process.off('SIGTERM', onStop)
    process.off('SIGINT', onStop)
    log.info('credmon: stopped')
  }
}
