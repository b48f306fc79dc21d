import { chmodSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

describe('condor-token-broker credmon config | wrapper', () => {
  it('prints the HTCondor knobs that run the credmon and the job wrapper', async () => {
    const r = await cli(['credmon', 'config', '--broker', 'https://broker.example.org:8443/', '--providers', 'scitokens,cms-store', '--use-format', 'bare', '--ca-file', '/etc/ctb/ca.pem'], {})
    expect(r.code).toBe(0)
    const knobs = Object.fromEntries(r.out.split('\n').filter((l) => /^[A-Z_]+ = /.test(l)).map((l) => l.split(' = ') as [string, string]))
    expect(knobs).toEqual({
      SEC_CREDENTIAL_DIRECTORY_OAUTH: '/var/lib/condor/oauth_credentials',
      DAEMON_LIST: '$(DAEMON_LIST) CREDD CREDMON_OAUTH',
      CREDMON_OAUTH: '/usr/bin/condor-token-broker',
      CREDMON_OAUTH_ARGS: 'credmon --broker https://broker.example.org:8443 --providers scitokens,cms-store --cred-dir $(SEC_CREDENTIAL_DIRECTORY_OAUTH) --token-file /etc/condor/tokens.d/credd --ca-file /etc/ctb/ca.pem --use-format bare',
      SEC_DEFAULT_ENCRYPTION: 'REQUIRED',
      USER_JOB_WRAPPER: '/usr/libexec/condor-token-broker/job_wrapper.sh',
      STARTER_JOB_ENVIRONMENT: '"CTB_BEARER_TOKEN_USE=scitokens"',
    })
  })

  // An admin whose npm prefix is /usr/local (nodejs.org's default) needs CREDMON_OAUTH to name that
  // command, not /usr/bin's: the option that says so must be in --help, and be used.
  it('--help names --executable, and config puts it in CREDMON_OAUTH', async () => {
    const help = await cli(['credmon', 'config', '--help'], {})
    expect(help.out).toMatch(/--executable PATH/)
    const r = await cli(['credmon', 'config', '--broker', 'https://broker.example.org', '--providers', 'cms', '--executable', '/usr/local/bin/condor-token-broker'], {})
    expect(r.code, r.err).toBe(0)
    expect(r.out).toMatch(/^CREDMON_OAUTH = \/usr\/local\/bin\/condor-token-broker$/m)
  })

  it('writes the job wrapper executable, the same script it prints', async () => {
    const out = join(tempDir('ctb-wrapper-'), 'job_wrapper.sh')
    const r = await cli(['credmon', 'wrapper', '--out', out], {})
    expect(r.code).toBe(0)
    expect(statSync(out).mode & 0o777).toBe(0o755)
    const printed = await cli(['credmon', 'wrapper'], {})
    expect(`${printed.out}\n`).toBe(readFileSync(out, 'utf8'))
    expect(printed.out.startsWith('#!/bin/sh\n')).toBe(true)
  })

  it.each([
    [['credmon', '--providers', 'scitokens'], '--broker URL is required'],
    [['credmon', '--broker', 'https://b', '--providers', 'a_b'], '"a_b" is not a provider name'],
    [['credmon', '--broker', 'ftp://b', '--providers', 'a'], '--broker must be an http(s) URL'],
    [['credmon', '--broker', 'https://u:p@b', '--providers', 'a'], '--broker must be a plain base URL'],
    [['credmon', '--broker', 'https://b', '--providers', 'a', '--use-format', 'xml'], '--use-format must be json or bare'],
    [['credmon', 'frobnicate'], 'unknown credmon command "frobnicate"'],
    // The broker's token route reads minimum_seconds of at most seven digits and answers 400 to more: every
    // request of the credmon would fail, and no .use would ever be written.
    [['credmon', '--broker', 'https://b', '--providers', 'a', '--minimum-seconds', '10000000'], '--minimum-seconds must be at most 9999999'],
    [['credmon', 'config', '--broker', 'https://b', '--providers', 'a', '--minimum-seconds', '10000000'], '--minimum-seconds must be at most 9999999'],
    [['credmon', '--broker', 'http://broker.example.org', '--providers', 'a'], '--broker must be https (plain http only to a loopback address)'],
  ])('refuses %j with one line and status 2', async (args, message) => {
    const r = await cli(args, {})
    expect(r.code).toBe(2)
    expect(r.err.split('\n')).toHaveLength(1)
    expect(r.err).toContain(message)
  })

  it('refuses a credential directory that is missing or open to others, before writing anything', async () => {
    const dir = tempDir('ctb-creddir-')
    const missing = await cli(['credmon', '--broker', 'https://b', '--providers', 'a', '--cred-dir', join(dir, 'nope')], {})
    expect(missing.code).toBe(1)
    expect(missing.err).toContain('ENOENT')
    chmodSync(dir, 0o755)
    const open = await cli(['credmon', '--broker', 'https://b', '--providers', 'a', '--cred-dir', dir], {})
    expect(open.code).toBe(1)
    expect(open.err).toContain('others must have no access')
    expect(readdirSync(dir)).toEqual([])
  })

  it('refuses an unreadable --ca-file in one line, before writing anything', async () => {
    const dir = tempDir('ctb-creddir-')
    chmodSync(dir, 0o700)
    const missing = join(tempDir(), 'no-ca.pem')
    const r = await cli(['credmon', '--broker', 'https://b', '--providers', 'a', '--cred-dir', dir, '--ca-file', missing], {})
    expect(r.code).toBe(1)
    expect(r.err).toBe(`condor-token-broker: cannot read --ca-file ${missing}: ENOENT`)
    expect(readdirSync(dir)).toEqual([])
  })
})
