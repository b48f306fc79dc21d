// A `pilot-enrolment` revocation row means nothing to a broker from before that kind: it would not enforce it
// (its pilots renewed and redeemed on that replica), and its consistency check would take the row's record for
// one not written by the broker. Such a broker must refuse the database instead, as it refuses any database
// newer than it knows (reader_checks.ts): a schema step marks it.
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { expect, it } from 'vitest'
import { checkSchemaVersion } from '../../src/storage/reader_checks.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'

// The SQLite schema version of the brokers before the pilot-enrolment kind (9573253^, src/storage/sqlite_writer.ts).
const BEFORE_PILOT_ENROLMENT = 15

it('an SQLite file this broker opened is refused by a broker from before pilot-enrolment revocations', async () => {
  const file = join(tempDir(), 'a.db')
  const store = new SqliteStore({ file, writer: 'inline' })
  await store.close()
  const check = new DatabaseSync(file)
  const { user_version: v } = check.prepare('PRAGMA user_version').get() as { user_version: number }
  check.close()
  expect(() => checkSchemaVersion(v, BEFORE_PILOT_ENROLMENT, 'write')).toThrow(/newer than this broker knows \(15\)/)
})
