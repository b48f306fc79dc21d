import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'
import { decodeCompact } from '../../src/issuance/jws.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'

const CHILD = fileURLToPath(new URL('./audit_crash_child.ts', import.meta.url))

/**
 * "A test kills the broker process (SIGKILL) in the middle of concurrent issuance; after
 * restart the chain verifies and every token a client received has its record."
 */
it('after SIGKILL mid-issuance the chain verifies and every token handed out has its record', async () => {
  const dir = tempDir()
  const dbFile = join(dir, 'audit.db')
  const child = spawn(process.execPath, [CHILD, join(dir, 'data'), dbFile], { stdio: ['ignore', 'pipe', 'pipe'] })
  const tokens: string[] = []
  let partial = ''
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`child produced only ${tokens.length} tokens in 25 s: ${stderr}`)) }, 25_000)
    child.stdout.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n')
      partial = lines.pop()!
      tokens.push(...lines.filter((l) => l.length > 0))
      // Kill while 64 workers are mid-batch, well after start-up.
      if (tokens.length >= 3000 && child.exitCode === null && !child.killed) {
        clearTimeout(timer)
        child.kill('SIGKILL')
        resolve()
      }
    })
    child.on('exit', () => { clearTimeout(timer); resolve() })
  })
  expect(await exited).toBe('SIGKILL')
  // Bytes after the last newline belong to a token whose line never completed: the client never got it.
  expect(tokens.length).toBeGreaterThanOrEqual(3000)

  // "Restart": open the store as the broker would, recovering the WAL.
  const store = new SqliteStore({ file: dbFile })
  const v = await store.verify()
  expect(v.ok).toBe(true)
  const records = v.ok ? v.records : 0
  expect(records).toBeGreaterThanOrEqual(tokens.length)
  await store.close()

  const db = new DatabaseSync(dbFile, { readOnly: true })
  const byJti = db.prepare("SELECT body FROM audit_log WHERE jti = ? AND type = 'token.issued'")
  let missing = 0
  for (const t of tokens) {
    const jti = decodeCompact(t)!.payload.jti as string
    const row = byJti.get(jti) as { body: string } | undefined
    if (!row || (JSON.parse(row.body) as { tokenSha256: string }).tokenSha256 !== createHash('sha256').update(t).digest('hex')) missing++
  }
  db.close()
  expect(missing).toBe(0)
}, 60_000)
