import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { replaceFileAtomic } from '../lib/secure_file.ts'

/**
 * Replaces a HTCondor config snippet atomically, mode 0644 so the daemons can read it. The temp name
 * starts with '.', which LOCAL_CONFIG_DIR_EXCLUDE_REGEXP skips by default (docs/htcondor-tokens.md §1.1), so a
 * daemon reconfiguring mid-write never reads half a file.
 */
export function writeCondorConfigAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true })
  replaceFileAtomic(path, text, 0o644)
}
