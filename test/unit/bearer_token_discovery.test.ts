import { describe, expect, it } from 'vitest'
import { discoverBearerToken } from '../../src/clients/bearer_token_discovery.ts'

// The order is WLCG Bearer Token Discovery's: BEARER_TOKEN, BEARER_TOKEN_FILE, $XDG_RUNTIME_DIR/bt_u$UID, /tmp/bt_u$UID.
function files(map: Record<string, string>) {
  return (p: string) => {
    if (p in map) return map[p]!
    throw Object.assign(new Error('missing'), { code: 'ENOENT' })
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
    const unreadable = (p: string) => { if (p === '/run/user/7/bt_u7') throw Object.assign(new Error('denied'), { code: 'EACCES' }); return 'stale' }
    expect(() => discoverBearerToken(env, 7, unreadable)).toThrow('cannot read the bearer token file /run/user/7/bt_u7: EACCES')
  })

  it('refuses anything but one word, from the environment or a file', () => {
    expect(() => discoverBearerToken({ BEARER_TOKEN: 'two words' }, 7, files({}))).toThrow('BEARER_TOKEN does not hold one bearer token')
    expect(() => discoverBearerToken({ BEARER_TOKEN_FILE: '/f' }, 7, files({ '/f': 'a\nb\n' }))).toThrow('the bearer token file /f does not hold one bearer token')
  })
})
