import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { prepareFileReplacement, replaceFileAtomic } from '../../src/lib/secure_file.ts'
import { tempDir } from '../support/tmp.ts'

// A temp file left behind after a failed replace can hold a live token or key: nothing may remain.
describe('replaceFileAtomic leaves no temp file behind', () => {
  it('when the target is a directory', () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'somedir'))
    expect(() => replaceFileAtomic(join(dir, 'somedir'), 'secret\n', 0o600)).toThrow(/EISDIR/)
    expect(readdirSync(dir)).toEqual(['somedir'])
    expect(readdirSync(join(dir, 'somedir'))).toEqual([])
  })

  it('when the rename fails after the write', () => {
    const dir = tempDir()
    const pending = prepareFileReplacement(join(dir, 'later'), 0o600)
    // The target turns into a directory between prepare and commit: rename(2) now fails.
    mkdirSync(join(dir, 'later'))
    writeFileSync(join(dir, 'later', 'y'), 'y')
    expect(() => pending.commit('secret\n')).toThrow()
    expect(readdirSync(dir)).toEqual(['later'])
  })

  it('when the directory does not exist, and creates none', () => {
    const dir = tempDir()
    expect(() => replaceFileAtomic(join(dir, 'missing', 'tok'), 'secret\n', 0o600)).toThrow(/ENOENT/)
    expect(readdirSync(dir)).toEqual([])
  })
})

describe('prepareFileReplacement', () => {
  it('creates the temp file at once, with the mode, and commit replaces the target', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'tok'), 'old\n')
    const pending = prepareFileReplacement(join(dir, 'tok'), 0o600)
    const [tmp, ...rest] = readdirSync(dir).filter((f) => f !== 'tok')
    expect(rest).toEqual([])
    expect(tmp).toMatch(/^\.tok\.[0-9a-f]{12}\.tmp$/)
    expect(statSync(join(dir, tmp!)).mode & 0o777).toBe(0o600)
    pending.commit('new\n')
    expect(readdirSync(dir)).toEqual(['tok'])
    expect(readFileSync(join(dir, 'tok'), 'utf8')).toBe('new\n')
  })

  it('abort removes the temp file and keeps the target', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'tok'), 'old\n')
    const pending = prepareFileReplacement(join(dir, 'tok'), 0o600)
    pending.abort()
    pending.abort()
    expect(readdirSync(dir)).toEqual(['tok'])
    expect(readFileSync(join(dir, 'tok'), 'utf8')).toBe('old\n')
    expect(() => pending.commit('new\n')).toThrow(TypeError)
  })

  it('refuses a directory target before creating anything', () => {
    const dir = tempDir()
    expect(() => prepareFileReplacement(dir, 0o600)).toThrow(/EISDIR/)
    expect(readdirSync(dir)).toEqual([])
  })
})
