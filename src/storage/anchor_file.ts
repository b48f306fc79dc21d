import { readFile } from 'node:fs/promises'
import type { AnchorCopy } from '../audit/anchor.ts'
import type { Logger } from '../lib/logger.ts'
import { replaceSecretFileDurably } from '../lib/secure_file.ts'

/**
 * The copy of the sealed audit anchor kept in a file on the broker's host, out of reach of whoever can only
 * write the database (docs/audit.md). Replaced atomically, mode 0600; absent until the first check succeeds.
 * `log`: where a failed write is reported (the check goes on without the copy, so nothing else would say).
 */
export function anchorFile(path: string, options: { log?: Logger } = {}): AnchorCopy {
  // Reported once per run of failures, not at every check (audit.anchor_interval); a write that succeeds
  // again ends the run.
  let failing = false
  let unreadable = false
  return {
    async read() {
      try {
        const text = (await readFile(path, 'utf8')).trim()
        unreadable = false
        return text
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'unknown'
        if (code === 'ENOENT') return undefined
        // The check then goes on as if there were no copy, which switches off what the copy catches: said once
        // per run of failures, as a failed write is.
        if (!unreadable) {
          unreadable = true
          options.log?.warn('could not read the copy of the audit anchor outside the database; checking against the anchor in the database only, so a log cut or restored together with it would go unnoticed', { path, code })
        }
        throw err
      }
    },
    // Rewritten at every check while serving: fsync and rename on libuv's thread pool, so a slow disk holds
    // up only the check, not every request.
    async write(sealed) {
      try {
        await replaceSecretFileDurably(path, `${sealed}\n`)
        failing = false
      } catch (err) {
        if (!failing) {
          failing = true
          // The path and the errno only: the error's own text is not needed, and the sealed anchor never logged.
          const code = (err as NodeJS.ErrnoException).code ?? 'unknown'
          options.log?.warn('could not write the copy of the audit anchor outside the database; the anchor in the database is kept, and a log cut or restored together with it would go unnoticed until the copy is written again', { path, code })
        }
        throw err
      }
    },
  }
}
