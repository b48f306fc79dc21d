import { readFile } from 'node:fs/promises'
import type { AnchorCopy } from '../audit/anchor.ts'
import { replaceSecretFileDurably } from '../lib/secure_file.ts'

/**
 * The copy of the sealed audit anchor kept in a file on the broker's host, out of reach of whoever can only
 * write the database (docs/audit.md). Replaced atomically, mode 0600; absent until the first check succeeds.
 */
export function anchorFile(path: string): AnchorCopy {
  return {
    async read() {
      try {
        return (await readFile(path, 'utf8')).trim()
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw err
      }
    },
    // Rewritten at every check while serving: fsync and rename on libuv's thread pool, so a slow disk holds
    // up only the check, not every request.
    async write(sealed) {
      await replaceSecretFileDurably(path, `${sealed}\n`)
    },
  }
}
