import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// A data_dir the command cannot create (not yet made by the install steps, owned by another user, or a path
// through a file) is the operator's to fix, not a bug: one line naming the path and the cause, exit 1,
// never "internal error" (exit 70, which says: report this to the developers).
describe('file-system errors on the command line', () => {
  for (const args of [['keys', 'init'], ['ca', 'init']]) {
    it(`${args.join(' ')} with a data_dir under a file: one line naming it, exit 1`, async () => {
      const plain = join(tempDir(), 'plain')
      writeFileSync(plain, 'x')
      const r = await cli(args, { CTB_DATA_DIR: join(plain, 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' })
      expect(r.code).toBe(1)
      expect(r.err).not.toMatch(/internal error/)
      expect(r.err).toMatch(new RegExp(`^condor-token-broker: cannot mkdir ${plain.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/data/\\S*: not a directory \\(ENOTDIR\\)$`))
    })
  }
})
