import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { discoverBearerToken, type TokenFiles } from '../../src/clients/bearer_token_discovery.ts'

// The order is WLCG Bearer Token Discovery's: BEARER_TOKEN, BEARER_TOKEN_FILE, $XDG_RUNTIME_DIR/bt_u$UID, /tmp/bt_u$UID.
/** Files of uid 7, mode 0600, with the given contents; `owners` overrides the owner or mode of some. */
function files(map: Record<string, string>, owners: Record<string, { uid?: number; mode?: number; isFile?: boolean }> = {}): TokenFiles {
  const missing = () => { throw Object.assign(new Error('missing'), { code: 'ENOENT' }) }
  return {
    read: (p) => (p in map ? map[p]! : missing()),
    lstat: (p) => (p in map ? { uid: 7, mode: 0o100600, isFile: true, ...owners[p] } : missing()),
  }
}

describe('WLCG bearer token discovery', () => {
  const all = { '/f': ' from-file \n', '/run/user/7/bt_u7': 'from-xdg\n', '/tmp/bt_u7': 'from-tmp\n' }
  it.each([
    [{ BEARER_TOKEN: ' from-env ', BEARER_TOKEN_FILE: '/f', XDG_RUNTIME_DIR: '/run/user/7' }, all, 'from-env', 'BEARER_TOKEN'],
    [{ BEARER_TOKEN: '  ', BEARER_TOKEN_FILE: '/f' }, all, 'from-file', '/f'],
    [{ BEARER_TOKEN_FILE: '/f', XDG_RUNTIME_DIR: '/run/user/7' }, all, 'from-file', '/f'],
    [{ XDG_RUNTIME_DIR: '/run/user/7' }, all, 'from-xdg', '/run/user/7/bt_u7'],
    [{ XDG_RUNTIME_DIR: '/run/user/7' }, { '/tmp/bt_u7': 'from-tmp' }, 'from-tmp', '/tmp/bt_u7'],
    [{}, all, 'from-tmp', '/tmp/bt_u7'],
  ])('%j finds the first source', (env, map, token, source) => {
    expect(discoverBearerToken(env, 7, files(map))).toEqual({ token, source })
  })

  it('fails on a named file that is missing, and when nothing is found', () => {
    expect(() => discoverBearerToken({ BEARER_TOKEN_FILE: '/nope' }, 7, files(all))).toThrow('cannot read the bearer token file /nope: ENOENT')
    expect(() => discoverBearerToken({}, 7, files({}))).toThrow(/^no bearer token: set BEARER_TOKEN or BEARER_TOKEN_FILE, or write \/tmp\/bt_u7 \(/)
    expect(() => discoverBearerToken({ XDG_RUNTIME_DIR: '/run/user/7' }, 7, files({}))).toThrow(/write \/run\/user\/7\/bt_u7 or \/tmp\/bt_u7 /)
  })

  it('does not pass a found but broken file over for the next place: that would act with another token', () => {
    const env = { XDG_RUNTIME_DIR: '/run/user/7' }
    expect(() => discoverBearerToken(env, 7, files({ '/run/user/7/bt_u7': ' \n', '/tmp/bt_u7': 'stale' }))).toThrow('the bearer token file /run/user/7/bt_u7 does not hold one bearer token')
    const both = files({ '/run/user/7/bt_u7': 'x', '/tmp/bt_u7': 'stale' })
    const unreadable: TokenFiles = { ...both, read: (p) => { if (p === '/run/user/7/bt_u7') throw Object.assign(new Error('denied'), { code: 'EACCES' }); return both.read(p) } }
    expect(() => discoverBearerToken(env, 7, unreadable)).toThrow('cannot read the bearer token file /run/user/7/bt_u7: EACCES')
  })

  it('refuses anything but one word, from the environment or a file', () => {
    expect(() => discoverBearerToken({ BEARER_TOKEN: 'two words' }, 7, files({}))).toThrow('BEARER_TOKEN does not hold one bearer token')
    expect(() => discoverBearerToken({ BEARER_TOKEN_FILE: '/f' }, 7, files({ '/f': 'a\nb\n' }))).toThrow('the bearer token file /f does not hold one bearer token')
  })
})

describe('a discovered file someone else could have planted', () => {
  it.each([
    [{ uid: 8 }, 'belongs to uid 8, not to you (uid 7); refusing it'],
    [{ mode: 0o100622 }, 'is writable by others (mode 622); refusing it'],
    [{ mode: 0o100660 }, 'is writable by others (mode 660); refusing it'],
    [{ isFile: false }, 'is not a plain file (a symlink?); refusing it'],
  ])('refuses %j at /tmp/bt_u<uid>', (owner, message) => {
    expect(() => discoverBearerToken({}, 7, files({ '/tmp/bt_u7': 'planted' }, { '/tmp/bt_u7': owner }))).toThrow(`the bearer token file /tmp/bt_u7 ${message}`)
  })

  it('reads a file named by BEARER_TOKEN_FILE as it is: the user chose it', () => {
    expect(discoverBearerToken({ BEARER_TOKEN_FILE: '/shared/t' }, 7, files({ '/shared/t': 'mine' }, { '/shared/t': { uid: 8, mode: 0o100666 } }))).toEqual({ token: 'mine', source: '/shared/t' })
  })

  it('on a real file system: this user\'s 0600 file passes; a group-writable one and a symlink do not', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctb-bt-'))
    try {
      const uid = process.getuid!()
      const path = join(dir, `bt_u${uid}`)
      writeFileSync(path, 'real-token\n', { mode: 0o600 })
      expect(discoverBearerToken({}, uid, undefined, dir)).toEqual({ token: 'real-token', source: path })
      chmodSync(path, 0o620)
      expect(() => discoverBearerToken({}, uid, undefined, dir)).toThrow('is writable by others (mode 620)')
      rmSync(path)
      writeFileSync(join(dir, 'elsewhere'), 'other-token\n', { mode: 0o600 })
      symlinkSync(join(dir, 'elsewhere'), path)
      expect(() => discoverBearerToken({}, uid, undefined, dir)).toThrow('is not a plain file (a symlink?)')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
