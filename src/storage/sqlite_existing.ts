import { DatabaseSync } from 'node:sqlite'
import { pathToFileURL } from 'node:url'

/**
 * A read-write connection to a database file that must already be there (SQLite's `mode=rw`: no file is
 * created, and no directory either). For the threads that join the store's own connection (the writer and
 * the checkpointer): if the file is gone, the log was removed under the process, and an empty one must not
 * take its place. A module of its own so the checkpointer thread loads nothing else.
 */
export function openExistingSqlite(file: string): DatabaseSync {
  const url = pathToFileURL(file)
  url.searchParams.set('mode', 'rw')
  return new DatabaseSync(url)
}
