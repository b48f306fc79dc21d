import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { HeldTokenSpill, type SpilledToken } from '../../src/credentials/held_token_spill.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { tempDir } from '../support/tmp.ts'

const TOKEN: SpilledToken = {
  user: 'alice', provider: 'cms', scopes: ['storage.read:/'], audience: ['https://se.example.org'], caller: { iss: 'https://iam.example.org/', sub: 'a-sub' },
  createdAt: 1_800_000_000, previousNonce: 'bm9uY2Ux', sealed: { ciphertext: 'Y2lwaGVy', nonce: 'bm9uY2Uy', keyId: '0123456789abcdef' }, rotatedAt: 1_800_000_100,
}

describe('spilled refresh tokens', () => {
  it('round-trips one file per credential, owner-only, named without the user name', () => {
    const dir = join(tempDir(), 'held')
    const spill = new HeldTokenSpill(dir, createLogger(() => {}))
    spill.save('alice\ncms', TOKEN)
    spill.save('alice\ncms', { ...TOKEN, rotatedAt: TOKEN.rotatedAt + 1 })
    const [name, ...rest] = readdirSync(dir)
    expect(rest).toEqual([])
    expect(name).toMatch(/^[0-9a-f]{64}\.json$/)
    expect(statSync(join(dir, name!)).mode & 0o777).toBe(0o600)
    expect(spill.load()).toEqual([{ ...TOKEN, rotatedAt: TOKEN.rotatedAt + 1 }])
    spill.remove('alice\ncms')
    expect(spill.load()).toEqual([])
  })

  it('skips a file it cannot read, saying which, and keeps the others', () => {
    const dir = join(tempDir(), 'held')
    mkdirSync(dir, { recursive: true })
    const lines: string[] = []
    const spill = new HeldTokenSpill(dir, createLogger((l) => lines.push(l)))
    spill.save('bob\ncms', { ...TOKEN, user: 'bob' })
    writeFileSync(join(dir, `${'a'.repeat(64)}.json`), '{"user": "mallory"')
    writeFileSync(join(dir, `${'b'.repeat(64)}.json`), JSON.stringify({ ...TOKEN, extra: 1 }))
    expect(spill.load().map((t) => t.user)).toEqual(['bob'])
    expect(lines.filter((l) => l.includes('ignoring a spilled refresh token file'))).toHaveLength(2)
    expect(lines.join('\n')).toContain(`${'a'.repeat(64)}.json`)
  })
})
