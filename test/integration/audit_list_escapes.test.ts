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

// audit list is what an operator reads a suspect log with, on a terminal. It quoted a revoked=KIND:VALUE or a
// reason with JSON.stringify, which escapes only C0 controls, quotes and backslashes: U+009B (the one-byte CSI,
// which terminals honouring C1 controls take as an escape sequence), DEL and the bidirectional overrides went
// out raw. A reason sent through the API may hold them (only C0 and DEL are refused there), and a lift record
// carries the kind and value it states, whatever they are. Each is now written as a \uXXXX escape (letters of
// other scripts stay as they are: audit_cli.test.ts).
describe('audit list with control characters in a record', () => {
  it('prints revoked= and reason= with DEL, C1 controls and bidi overrides escaped', async () => {
    const dataDir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    const store = new SqliteStore({ file: join(dataDir, 'audit.db') })
    const rev = await store.revoke({ kind: 'client', value: 'factory-x', revokedAt: 1_800_000_000, until: 1_800_086_400, revokedBy: 'cli:op' },
      { type: 'token.revoked', time: 1_800_000_000, caller: { sub: 'cli:op' }, reason: 'a\u009b2Jb' })
    await store.lift({ id: rev.id, liftedAt: 1_800_000_100, liftedBy: 'cli:op' }, {
      type: 'token.unrevoked', time: 1_800_000_100, caller: { sub: 'cli:op' }, reason: 'x\u202ey',
      detail: { lift: { id: rev.id, liftedAt: 1_800_000_100, liftedBy: 'cli:op', kind: 'client', value: 'f\u009b2J\u007f' } },
    })
    await store.close()
    const r = await cli(env, 'audit', 'list')
    expect(r.code).toBe(0)
    const lines = r.out.split('\n')
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/ token\.unrevoked .* revoked="client:f\\u009b2J\\u007f"  reason="x\\u202ey"$/)
    expect(lines[1]).toMatch(/ token\.revoked .* revoked=client:factory-x  reason="a\\u009b2Jb"$/)
    expect(r.out).toMatch(/^[\x20-\x7e\n]*$/)
  })
})
