import { existsSync, statSync } from 'node:fs'
import { CliError } from './command.ts'

/**
 * Refuses a command that writes into data_dir (keys, the audit database and its -wal/-shm files, the pool
 * CA, the audit anchor) when run by another user than the directory's owner: what `sudo condor-token-broker
 * …` (root, not `sudo -u ctb`) writes there is root's, mode 0600, and the running broker, as ctb, cannot
 * read or write it (it keeps old keys, fails its next start, or cannot append to its audit log). Call it
 * before anything is opened or written; a data_dir not yet made is the caller's to make.
 */
export function assertDataDirOwner(dataDir: string, command: string): void {
  const uid = process.geteuid?.()
  if (uid === undefined || !existsSync(dataDir)) return
  const owner = statSync(dataDir).uid
  if (owner !== uid) {
    throw new CliError(`data_dir ${dataDir} belongs to uid ${owner}, not to this user (uid ${uid}): run "${command}" as its owner (e.g. sudo -u ctb), or the broker cannot read what it writes`)
  }
}
