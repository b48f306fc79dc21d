import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'

async function cli(env: NodeJS.ProcessEnv, ...argv: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

// 794dc07 made audit list write U+009B (a one-character CSI to a terminal honouring C1 controls), DEL and the
// bidirectional overrides as \uXXXX escapes; revoke list prints the same reasons, read on the same terminal,
// and still quoted them with JSON.stringify, which passes all of those through. A reason sent through the admin
// API may hold them (only C0 controls and DEL are refused there).
describe('revoke list with control characters in a reason', () => {
  it('prints the reason with C1 controls and bidirectional overrides escaped', async () => {
    const dataDir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    const store = new SqliteStore({ file: join(dataDir, 'audit.db') })
    const now = Math.floor(Date.now() / 1000)
    await store.revoke({ kind: 'client', value: 'factory-x', revokedAt: now, until: now + 86_400, revokedBy: 'cli:op', reason: 'a\u009b2Jb\u202ec' },
      { type: 'token.revoked', time: now, caller: { sub: 'cli:op' }, reason: 'a\u009b2Jb\u202ec' })
    await store.close()
    const r = await cli(env, 'revoke', 'list')
    expect(r.code).toBe(0)
    expect(r.out).toContain('  reason "a\\u009b2Jb\\u202ec"')
    expect(r.out).not.toMatch(/[\u0080-\u009f\u202a-\u202e]/)
  })
})
