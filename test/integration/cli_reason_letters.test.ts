import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'

async function cli(env: NodeJS.ProcessEnv, ...argv: string[]) {
  const out: string[] = []
  const code = await runCli(argv, { out: (s) => out.push(s), err: () => undefined, env })
  return { code, out: out.join('\n') }
}

// A reason is an operator's own words, often not in English: 794dc07 wrote every character outside printable
// ASCII as \uXXXX to keep C1 controls and bidirectional overrides off the terminal, and so printed "für Müller"
// as "f\u00fcr M\u00fcller". Letters, marks, digits, punctuation and symbols do nothing to a terminal and are
// printed as written; what is not printable (controls, format characters such as the bidi overrides and the
// zero-width space, line and paragraph separators, private use) is still escaped.
describe('audit list and revoke list with a reason in another language', () => {
  const REASON = 'Zugang für Müller gesperrt — Rechner kompromittiert, 東京 ✓'
  const HOSTILE = 'a\u009bb\u202ec\u200bd\u2028e\ue000g\u00a0h'
  const HOSTILE_SHOWN = '"a\\u009bb\\u202ec\\u200bd\\u2028e\\ue000g\\u00a0h"'

  it('prints its letters and symbols as written and escapes only what is not printable', async () => {
    const dataDir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    const store = new SqliteStore({ file: join(dataDir, 'audit.db') })
    const now = Math.floor(Date.now() / 1000)
    for (const [value, reason] of [['factory-x', REASON], ['factory-y', HOSTILE]] as const) {
      await store.revoke({ kind: 'client', value, revokedAt: now, until: now + 86_400, revokedBy: 'cli:op', reason },
        { type: 'token.revoked', time: now, caller: { sub: 'cli:op' }, reason })
    }
    await store.close()
    const audit = (await cli(env, 'audit', 'list')).out.split('\n')
    expect(audit[1]).toMatch(/ revoked=client:factory-x {2}reason="Zugang für Müller gesperrt — Rechner kompromittiert, 東京 ✓"$/)
    expect(audit[0]).toContain(`revoked=client:factory-y  reason=${HOSTILE_SHOWN}`)
    const revoke = (await cli(env, 'revoke', 'list')).out.split('\n')
    expect(revoke[0]).toContain('  reason "Zugang für Müller gesperrt — Rechner kompromittiert, 東京 ✓"  by cli:op')
    expect(revoke[1]).toContain(`  reason ${HOSTILE_SHOWN}  by cli:op`)
  })
})
