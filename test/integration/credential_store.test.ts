import { join } from 'node:path'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'
import { credentialStoreContract } from './credential_store.contract.ts'

credentialStoreContract('memory', async () => new MemoryStore())
credentialStoreContract('sqlite (inline writer)', async () => new SqliteStore({ file: join(tempDir(), 'a.db'), writer: 'inline' }))
credentialStoreContract('sqlite (writer thread)', async () => new SqliteStore({ file: join(tempDir(), 'a.db') }))
