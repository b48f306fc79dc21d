import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { CliError } from './command.ts'

/**
 * Refuses a command that writes into data_dir (keys, the audit database and its -wal/-shm files, the pool
 * CA, the audit anchor) when run by another user than the one the broker runs as: what `sudo
 * condor-token-broker …` (root, not `sudo -u ctb`) writes there is root's, mode 0600, and the running broker,
 * as ctb, cannot read or write it (it keeps old keys, fails its next start, or cannot append to its audit log).
 *
 * The broker's user is told by the owner of keys/ (0700, made by the broker's first start or the first keys
 * init), not of data_dir: a volume's top directory may be root's while the broker owns what is in it
 * (Kubernetes' fsGroup, OpenShift). Without keys/ yet, data_dir's owner is the best guess, unless root owns it
 * and the caller is not: such a directory was shared on purpose, and what the caller makes in it is the
 * caller's, as serve's would be. Call it before anything is opened or written; a data_dir not yet made is the
 * caller's to make.
 */
export function assertDataDirOwner(dataDir: string, command: string): void {
  const uid = process.geteuid?.()
  if (uid === undefined) return
  const keysDir = join(dataDir, 'keys')
  const dir = existsSync(keysDir) ? keysDir : dataDir
  if (!existsSync(dir)) return
  const owner = statSync(dir).uid
  if (dir === dataDir && owner === 0 && uid !== 0) return
  if (owner !== uid) {
    throw new CliError(`${dir === keysDir ? 'the key directory' : 'data_dir'} ${dir} belongs to uid ${owner}, not to this user (uid ${uid}): run "${command}" as its owner (e.g. sudo -u ctb), or the broker cannot read what it writes`)
  }
}
