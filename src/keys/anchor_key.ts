import { join } from 'node:path'
import { anchorKeyFrom } from '../audit/anchor.ts'
import type { Config } from '../config.ts'
import { KeyStore } from './key_store.ts'

/**
 * The key that seals the audit anchors, for a command that only reads them (`audit verify`): derived from the
 * IDTOKEN key as `serve` derives it, or why that key could not be read. Never creates the IDTOKEN key: one
 * made up here would seal nothing `serve` wrote, and would be a new pool key besides.
 */
export function tryAnchorKey(config: Config): { key: Buffer } | { problem: string } {
  try {
    return { key: anchorKeyFrom(new KeyStore(join(config.data_dir, 'keys')).loadIdTokenKey(config.idtoken.key).hmac) }
  } catch (err) {
    return { problem: (err as Error).message }
  }
}
