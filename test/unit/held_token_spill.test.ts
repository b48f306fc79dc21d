import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
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
  it('round-trips one file per credential, owner-only, named without the user name', async () => {
    const dir = join(tempDir(), 'held')
    const spill = new HeldTokenSpill(dir, createLogger(() => {}))
    await spill.save('alice\ncms', TOKEN)
    await spill.save('alice\ncms', { ...TOKEN, rotatedAt: TOKEN.rotatedAt + 1 })
    const [name, ...rest] = readdirSync(dir)
    expect(rest).toEqual([])
    expect(name).toMatch(/^[0-9a-f]{64}\.json$/)
    expect(statSync(join(dir, name!)).mode & 0o777).toBe(0o600)
    expect(spill.load()).toEqual([{ ...TOKEN, rotatedAt: TOKEN.rotatedAt + 1 }])
    await spill.remove('alice\ncms')
    expect(spill.load()).toEqual([])
  })

  it('skips a file it cannot read, saying which, and keeps the others', async () => {
    const dir = join(tempDir(), 'held')
    mkdirSync(dir, { recursive: true })
    const lines: string[] = []
    const spill = new HeldTokenSpill(dir, createLogger((l) => lines.push(l)))
    await spill.save('bob\ncms', { ...TOKEN, user: 'bob' })
    writeFileSync(join(dir, `${'a'.repeat(64)}.json`), '{"user": "mallory"', { mode: 0o600 })
    writeFileSync(join(dir, `${'b'.repeat(64)}.json`), JSON.stringify({ ...TOKEN, extra: 1 }), { mode: 0o600 })
    expect(spill.load().map((t) => t.user)).toEqual(['bob'])
    const ignored = lines.filter((l) => l.includes('ignoring a spilled refresh token file'))
    expect(ignored.map((l) => /"reason":"([^"]+)"/.exec(l)?.[1]).sort()).toEqual(['not JSON', 'not a spilled refresh token'])
    expect(lines.join('\n')).toContain(`${'a'.repeat(64)}.json`)
  })

  it('reads only regular owner-only files named for their credential, and logs names, never contents', async () => {
    const dir = join(tempDir(), 'held')
    const lines: string[] = []
    const spill = new HeldTokenSpill(dir, createLogger((l) => lines.push(l)))
    expect(spill.claim()).toBe(true)
    await spill.save('carol\ncms', { ...TOKEN, user: 'carol' })
    // A secret elsewhere, linked in; a FIFO (reading it would block start-up); a group-readable file; a
    // token filed under another credential's name.
    const secret = join(tempDir(), 'secret.key')
    writeFileSync(secret, 'c0ffeeabab-not-for-the-log', { mode: 0o600 })
    symlinkSync(secret, join(dir, `${'c'.repeat(64)}.json`))
    expect(spawnSync('mkfifo', [join(dir, `${'d'.repeat(64)}.json`)]).status).toBe(0)
    writeFileSync(join(dir, `${'e'.repeat(64)}.json`), JSON.stringify({ ...TOKEN, user: 'erin' }), { mode: 0o640 })
    writeFileSync(join(dir, `${'f'.repeat(64)}.json`), JSON.stringify({ ...TOKEN, user: 'frank' }), { mode: 0o600 })
    expect(spill.load().map((t) => t.user)).toEqual(['carol'])
    const ignored = lines.filter((l) => l.includes('ignoring a spilled refresh token file'))
    expect(ignored).toHaveLength(4)
    expect(lines.join('\n')).not.toContain('c0ffee')
    expect(lines.join('\n')).toContain("its name is not its credential's")
  })

  it('claims the directory for one live process at a time, and refuses one others can reach', () => {
    const root = tempDir()
    const dir = join(root, 'held')
    const lines: string[] = []
    const log = createLogger((l) => lines.push(l))
    const a = new HeldTokenSpill(dir, log)
    expect(a.claim()).toBe(true)
    expect(statSync(dir).mode & 0o777).toBe(0o700)
    // A lock naming a live process (the parent of this one) keeps another claimant out.
    writeFileSync(join(dir, '.lock'), `${process.ppid}\n`)
    expect(new HeldTokenSpill(dir, log).claim()).toBe(false)
    expect(lines.join('\n')).toContain('another broker process holds the directory')
    // One naming a process that is gone is stale.
    writeFileSync(join(dir, '.lock'), '999999999\n')
    expect(new HeldTokenSpill(dir, log).claim()).toBe(true)

    const loose = join(root, 'loose')
    mkdirSync(loose)
    chmodSync(loose, 0o777)
    expect(new HeldTokenSpill(loose, log).claim()).toBe(false)
    expect(lines.join('\n')).toContain('must be a directory of ours with mode 0700')
  })

  // The spill is written while the credential store is failing, on the path of the request that rotated the
  // token. A synchronous fsync there stops every other request of the broker for as long as the disk takes,
  // and a store outage is when the disk may be slowest.
  it('writes off the event loop, and resolves only once the file is whole on disk', async () => {
    const spill = new HeldTokenSpill(join(tempDir(), 'held'), createLogger(() => {}))
    let turned = false
    setImmediate(() => { turned = true })
    const saved = spill.save('alice\ncms', TOKEN)
    expect(await saved).toBe(true)
    // The event loop ran other work while the file was written and synced.
    expect(turned).toBe(true)
    expect(spill.load()).toEqual([TOKEN])
  })

  it('applies the saves and removes of one credential in the order they were asked for', async () => {
    const spill = new HeldTokenSpill(join(tempDir(), 'held'), createLogger(() => {}))
    const newer = { ...TOKEN, rotatedAt: TOKEN.rotatedAt + 1 }
    void spill.save('alice\ncms', TOKEN)
    void spill.remove('alice\ncms')
    await spill.settled()
    expect(spill.load()).toEqual([])
    void spill.remove('alice\ncms')
    void spill.save('alice\ncms', TOKEN)
    void spill.save('alice\ncms', newer)
    await spill.settled()
    expect(spill.load()).toEqual([newer])
  })

  it('a save that cannot write resolves false, logged, and leaves no temp file behind', async () => {
    const root = tempDir()
    const dir = join(root, 'held')
    mkdirSync(dir, { mode: 0o700 })
    const lines: string[] = []
    const spill = new HeldTokenSpill(dir, createLogger((l) => lines.push(l)))
    // A directory where the file should go: the rename fails after the temp file was written.
    mkdirSync(spill.fileOf('alice\ncms'))
    expect(await spill.save('alice\ncms', TOKEN)).toBe(false)
    expect(lines.some((l) => l.includes('could not keep a held rotated refresh token on disk'))).toBe(true)
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([])
  })
})
