import { join } from 'node:path'
import type { AppDeps } from '../../src/app.ts'
import { loadConfig } from '../../src/config.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { tempDir } from './tmp.ts'

export const TEST_NOW = 1_800_000_000

/** Real keys in a temp data dir, no sockets: for app.request tests. */
export function testDeps(overrides: Partial<AppDeps> = {}, env: NodeJS.ProcessEnv = {}): AppDeps {
  const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_ISSUER: 'https://broker.example.org', ...env } })
  const { keys } = ensureAndLoadKeys(config, TEST_NOW)
  return { config, keys, log: silentLogger, readiness: async () => ({ keys: 'ok' }), ...overrides }
}
