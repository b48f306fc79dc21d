import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, lstatSync, mkdirSync, renameSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { BrokerClient, JobTokenQuery, JobTokenResult } from '../../src/clients/credmon/client.ts'
import { nodeCredDirFs, type CredDirFs } from '../../src/clients/credmon/cred_dir.ts'
import { Credmon } from '../../src/clients/credmon/credmon.ts'
import { startCredmonLoop } from '../../src/clients/credmon/loop.ts'
import type { UseFormat } from '../../src/clients/credmon/use_file.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { tempDir } from '../support/tmp.ts'

const BROKER = 'https://broker.example.org:8443'
const T0 = 1_800_000_000

/** A broker double scripted per call; records what the credmon asked for. */
function scriptedClient(answer: (call: number) => JobTokenResult) {
  const calls: Array<{ user: string; provider: string; query: JobTokenQuery }> = []
  const client: BrokerClient = {
    async fetchJobToken(user, provider, query) {
      calls.push({ user, provider, query })
      return answer(calls.length)
    },
  }
  return { client, calls }
}

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
const token = (n: number, expires_in = 1200): JobTokenResult => ({ kind: 'token', token: { access_token: `eyJ.tok${n}.sig`, token_type: 'Bearer', expires_in, scope: '' } })

function capturingLog() {
  const lines: Array<{ level: string; msg: string }> = []
  const log: Logger = {
    info: (msg) => { lines.push({ level: 'info', msg }) },
    warn: (msg) => { lines.push({ level: 'warn', msg }) },
    error: (msg) => { lines.push({ level: 'error', msg }) },
  }
  return { log, lines }
}

function setup(answer: (call: number) => JobTokenResult, opts: { format?: UseFormat; fs?: CredDirFs; providers?: string[] } = {}) {
  const dir = tempDir('ctb-credmon-')
  let now = T0
  const clock = { now: () => now }
  const { client, calls } = scriptedClient(answer)
  const { log, lines } = capturingLog()
  const credmon = new Credmon(
    { credDir: dir, providers: opts.providers ?? ['scitokens'], brokerUrl: BROKER, useFormat: opts.format ?? 'json', minimumSeconds: 1200 },
    { fs: opts.fs ?? nodeCredDirFs, clock, client, log },
  )
  const top = (user: string, base: string, body: Record<string, unknown> = { broker_url: BROKER, user, provider: base.split('_')[0] }) => {
    mkdirSync(join(dir, user), { recursive: true })
    writeFileSync(join(dir, user, `${base}.top`), JSON.stringify(body), { mode: 0o600 })
    // mtimes are set from the fake clock so "newer than" comparisons follow it
    utimesSync(join(dir, user, `${base}.top`), now, now)
  }
  return { dir, credmon, calls, lines, top, at: (t: number) => { now = t }, now: () => now }
}

describe('credmon scan', () => {
  it('writes <user>/<provider>.use as JSON {access_token, expires_in}, owner read-only (0400), and touches CREDMON_COMPLETE', async () => {
    const s = setup(() => token(1))
    s.top('alice', 'scitokens')
    const summary = await s.credmon.scan()
    expect(summary).toEqual({ refreshed: 1, failed: 0, removed: 0 })
    const use = join(s.dir, 'alice', 'scitokens.use')
    expect(JSON.parse(readFileSync(use, 'utf8'))).toEqual({ access_token: 'eyJ.tok1.sig', expires_in: 1200 })
    expect(statSync(use).mode & 0o777).toBe(0o400)
    expect(existsSync(join(s.dir, 'CREDMON_COMPLETE'))).toBe(true)
    // temp file + rename leaves nothing else behind in the user's directory
    expect(readdirSync(join(s.dir, 'alice')).sort()).toEqual(['scitokens.top', 'scitokens.use'])
    expect(s.calls).toEqual([{ user: 'alice', provider: 'scitokens', query: { minimum_seconds: 1200 } }])
  })

  it('writes the bare token and a newline when asked for the Vault credmon form', async () => {
    const s = setup(() => token(1), { format: 'bare' })
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    expect(readFileSync(join(s.dir, 'alice', 'scitokens.use'), 'utf8')).toBe('eyJ.tok1.sig\n')
  })

  it('at start writes the pid file the credd signals and drops a stale CREDMON_COMPLETE', async () => {
    const s = setup(() => token(1))
    writeFileSync(join(s.dir, 'CREDMON_COMPLETE'), '')
    s.credmon.begin(4242)
    expect(readFileSync(join(s.dir, 'pid'), 'utf8')).toBe('4242')
    expect(existsSync(join(s.dir, 'CREDMON_COMPLETE'))).toBe(false)
    await s.credmon.scan()
    expect(existsSync(join(s.dir, 'CREDMON_COMPLETE'))).toBe(true)
  })

  it('at start removes the temp files of a .use write that a killed credmon left half done, and nothing else', async () => {
    const s = setup(() => token(1))
    s.top('alice', 'scitokens')
    const use = join(s.dir, 'alice', 'scitokens.use')
    // A credmon killed (SIGKILL, power loss) between creating its temp file and renaming it.
    const module = resolve('src/lib/secure_file.ts')
    const script = `import { prepareFileReplacement } from ${JSON.stringify(module)}; prepareFileReplacement(${JSON.stringify(use)}, 0o400); process.kill(process.pid, 'SIGKILL')`
    expect(spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 10_000 }).signal).toBe('SIGKILL')
    const left = readdirSync(join(s.dir, 'alice')).filter((n) => n.endsWith('.tmp'))
    expect(left).toHaveLength(1)
    // Files that are not ours stay: another writer's temp file, the credd's, a user's.
    writeFileSync(join(s.dir, 'alice', '.scitokens.top.tmp'), 'x')
    writeFileSync(join(s.dir, 'alice', 'notes.use.0123456789ab.tmp'), 'x')
    s.credmon.begin(4242)
    expect(readdirSync(join(s.dir, 'alice')).sort()).toEqual(['.scitokens.top.tmp', 'notes.use.0123456789ab.tmp', 'scitokens.top'])
  })

  it('passes the .top scopes and audience and serves a handle under its provider', async () => {
    const s = setup(() => token(1))
    s.top('alice', 'scitokens_store', { broker_url: BROKER, user: 'alice', provider: 'scitokens', scopes: 'storage.read:/store', audience: 'https://xrd.example.org' })
    await s.credmon.scan()
    expect(s.calls).toEqual([{ user: 'alice', provider: 'scitokens', query: { minimum_seconds: 1200, scopes: 'storage.read:/store', audience: 'https://xrd.example.org' } }])
    expect(existsSync(join(s.dir, 'alice', 'scitokens_store.use'))).toBe(true)
  })

  it('refreshes at half the remaining life, not before', async () => {
    const s = setup((n) => token(n, 1200))
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    s.at(T0 + 599)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(1)
    s.at(T0 + 600)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(2)
    expect(JSON.parse(readFileSync(join(s.dir, 'alice', 'scitokens.use'), 'utf8')).access_token).toBe('eyJ.tok2.sig')
  })

  it('follows the life the broker states for a reused token', async () => {
    const s = setup((n) => token(n, n === 1 ? 1200 : 300))
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    s.at(T0 + 600)
    await s.credmon.scan()
    s.at(T0 + 749)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(2)
    s.at(T0 + 750)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(3)
  })

  it('leaves other credmons\' providers and non-broker .top files alone', async () => {
    const s = setup(() => token(1))
    s.top('alice', 'cms', { broker_url: BROKER, user: 'alice', provider: 'cms' })
    s.top('bob', 'scitokens', { vault_token: 'hvs.x', vault_url: 'https://vault:8200/v1/secret' })
    await s.credmon.scan()
    expect(s.calls).toEqual([])
    expect(existsSync(join(s.dir, 'alice', 'cms.use'))).toBe(false)
    expect(s.lines.filter((l) => l.msg.includes('bob/scitokens.top'))).toHaveLength(1)
  })

  // A .top holds what the submitting user's storer sent through condor_store_cred, and the credmon runs as root:
  // one of gigabytes was read whole at every scan (and a string past V8's limit failed only after that read).
  it('does not read a .top over 64 KiB: one line says why, once, and it is served again once it is a .top again', async () => {
    const s = setup(() => token(1))
    s.top('alice', 'scitokens')
    // A .top the credmon would serve but for its size: JSON allows the trailing white space.
    writeFileSync(join(s.dir, 'alice', 'scitokens.top'), `${JSON.stringify({ broker_url: BROKER, user: 'alice', provider: 'scitokens' })}${' '.repeat(64 * 1024)}`)
    await s.credmon.scan()
    await s.credmon.scan()
    expect(s.calls).toEqual([])
    expect(s.lines).toEqual([{ level: 'warn', msg: 'credmon: not serving alice/scitokens.top: it is larger than 65536 bytes, which no .top the credential storer writes is; not read' }])
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    expect(s.calls).toHaveLength(1)
  })

  it('never sends its token to a broker named in a .top other than its own, nor for a user the .top does not belong to', async () => {
    const s = setup(() => token(1))
    s.top('alice', 'scitokens', { broker_url: 'https://evil.example.net', user: 'alice', provider: 'scitokens' })
    s.top('bob', 'scitokens', { broker_url: BROKER, user: 'alice', provider: 'scitokens' })
    await s.credmon.scan()
    await s.credmon.scan()
    expect(s.calls).toEqual([])
    expect(s.lines.map((l) => l.msg)).toEqual([
      'credmon: not serving alice/scitokens.top: it names another broker (https://evil.example.net)',
      'credmon: not serving bob/scitokens.top: it names user alice',
    ])
  })

  it('asks for a handle\'s own credential when its .top names it, and for no other credential of the user', async () => {
    const s = setup(() => token(1))
    s.top('alice', 'scitokens_store', { broker_url: BROKER, user: 'alice', provider: 'scitokens_store', scopes: 'storage.read:/store' })
    s.top('alice', 'scitokens_read', { broker_url: BROKER, user: 'alice', provider: 'scitokens_store' })
    s.top('alice', 'scitokens', { broker_url: BROKER, user: 'alice', provider: 'scitokens_store' })
    await s.credmon.scan()
    expect(s.calls).toEqual([{ user: 'alice', provider: 'scitokens_store', query: { minimum_seconds: 1200, scopes: 'storage.read:/store' } }])
    expect(s.lines.map((l) => l.msg)).toEqual([
      'credmon: not serving alice/scitokens.top: it names provider scitokens_store',
      'credmon: not serving alice/scitokens_read.top: it names provider scitokens_store',
    ])
  })

  it('honours <user>.mark: no refresh while it is there, and again once it is gone', async () => {
    const s = setup((n) => token(n))
    s.top('alice', 'scitokens')
    writeFileSync(join(s.dir, 'alice.mark'), '')
    await s.credmon.scan()
    expect(s.calls).toEqual([])
    expect(existsSync(join(s.dir, 'CREDMON_COMPLETE'))).toBe(true)
    expect(s.lines.some((l) => l.msg.includes('alice.mark'))).toBe(true)
    writeFileSync(join(s.dir, 'alice', 'x'), '')
    ;(await import('node:fs')).rmSync(join(s.dir, 'alice.mark'))
    await s.credmon.scan()
    expect(s.calls).toHaveLength(1)
  })

  it('refreshes at once when the .top is replaced (a new registration)', async () => {
    const s = setup((n) => token(n))
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    s.at(T0 + 10)
    s.top('alice', 'scitokens', { broker_url: BROKER, user: 'alice', provider: 'scitokens', scopes: 'storage.read:/a' })
    await s.credmon.scan()
    expect(s.calls).toHaveLength(2)
    expect(s.calls[1]!.query.scopes).toBe('storage.read:/a')
  })

  it('does not trust an expires_in longer than the token\'s own life (exp - iat): refreshes at half of that', async () => {
    // A broker (or proxy) stating milliseconds where seconds are meant: taken as said, the next refresh would
    // come in 600000 s, long after the token died at T0 + 1200 and the jobs were left with a dead token.
    const jwt = (n: number) => `${b64({ alg: 'ES256' })}.${b64({ iat: T0, exp: T0 + 1200, n })}.c2ln`
    const s = setup((n) => ({ kind: 'token', token: { access_token: jwt(n), token_type: 'Bearer', expires_in: 1_200_000, scope: '' } }))
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    // The .use states the life the token really has, so a restarted credmon schedules from it too.
    expect(JSON.parse(readFileSync(join(s.dir, 'alice', 'scitokens.use'), 'utf8')).expires_in).toBe(1200)
    s.at(T0 + 600)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(2)
  })

  it('after a restart, refreshes a .use whose stated expires_in outlasts its token (exp - iat) at the token\'s half-life', async () => {
    const s = setup((n) => token(n))
    s.top('alice', 'scitokens')
    const old = `${b64({ alg: 'ES256' })}.${b64({ iat: T0, exp: T0 + 1200 })}.c2ln`
    writeFileSync(join(s.dir, 'alice', 'scitokens.use'), JSON.stringify({ access_token: old, expires_in: 1_200_000 }), { mode: 0o600 })
    utimesSync(join(s.dir, 'alice', 'scitokens.use'), T0, T0)
    await s.credmon.scan()
    expect(s.calls).toEqual([])
    s.at(T0 + 600)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(1)
  })

  it('after a restart, reads a bare token\'s life from its own iat and exp, not from an issuer clock ahead of ours', async () => {
    // The broker's clock runs 30 minutes ahead of the access point's. A 20-minute token written at T0 (our
    // clock) says iat T0 + 1800, exp T0 + 3000: its exp read on our clock promises 50 minutes, while it
    // dies at T0 + 1200 here. exp - iat is the same on any clock.
    const s = setup((n) => token(n), { format: 'bare' })
    s.top('alice', 'scitokens')
    const old = `${b64({ alg: 'ES256' })}.${b64({ iat: T0 + 1800, exp: T0 + 3000 })}.c2ln`
    writeFileSync(join(s.dir, 'alice', 'scitokens.use'), `${old}\n`, { mode: 0o600 })
    utimesSync(join(s.dir, 'alice', 'scitokens.use'), T0, T0)
    s.at(T0 + 10)
    await s.credmon.scan()
    expect(s.calls).toEqual([])
    s.at(T0 + 600)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(1)
  })

  it('after a restart, refreshes at once a JSON .use whose token is past its exp, even when the file\'s mtime is new (copied without -p)', async () => {
    // An admin moves the credential directory with `cp -r`: every mtime becomes the copy's time. The JWT in
    // this .use died 40 minutes before (exp T0 - 2400); read from the mtime and expires_in alone it would
    // seem to have 20 minutes left, and the jobs would get the dead token for 10 more minutes.
    const s = setup((n) => token(n))
    s.top('alice', 'scitokens')
    utimesSync(join(s.dir, 'alice', 'scitokens.top'), T0 - 5, T0 - 5)
    const dead = `${b64({ alg: 'ES256' })}.${b64({ iat: T0 - 3600, exp: T0 - 2400 })}.c2ln`
    writeFileSync(join(s.dir, 'alice', 'scitokens.use'), JSON.stringify({ access_token: dead, expires_in: 1200 }), { mode: 0o600 })
    utimesSync(join(s.dir, 'alice', 'scitokens.use'), T0, T0)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(1)
  })

  it('after a restart, keeps a still-fresh .use until its half-life', async () => {
    const s = setup((n) => token(n))
    s.top('alice', 'scitokens')
    writeFileSync(join(s.dir, 'alice', 'scitokens.use'), JSON.stringify({ access_token: 'eyJ.old.sig', expires_in: 1200 }), { mode: 0o600 })
    utimesSync(join(s.dir, 'alice', 'scitokens.use'), T0, T0)
    await s.credmon.scan()
    expect(s.calls).toEqual([])
    s.at(T0 + 600)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(1)
  })

  it('keeps the last .use through a broker outage, backing off 30, 60, 120 s and honouring Retry-After', async () => {
    const outage: JobTokenResult = { kind: 'unavailable', reason: 'temporarily_unavailable: IAM down' }
    const script: JobTokenResult[] = [token(1), outage, outage, { ...outage, retryAfter: 900 }, outage, token(2)]
    const s = setup((n) => script[n - 1]!)
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    const use = join(s.dir, 'alice', 'scitokens.use')
    const first = readFileSync(use, 'utf8')
    const attempts: number[] = []
    for (let t = T0 + 600; t <= T0 + 600 + 2000 && s.calls.length < script.length; t += 10) {
      s.at(t)
      const before = s.calls.length
      await s.credmon.scan()
      if (s.calls.length > before) attempts.push(t - T0)
      if (s.calls.length < script.length) expect(readFileSync(use, 'utf8')).toBe(first)
    }
    // failure 1 at 600 → +30; failure 2 at 630 → +60; failure 3 (Retry-After 900) at 690 → +900; failure 4 at 1590 → +240
    expect(attempts).toEqual([600, 630, 690, 1590, 1830])
    expect(JSON.parse(readFileSync(use, 'utf8')).access_token).toBe('eyJ.tok2.sig')
    // one warning for the outage, one line when it is over
    expect(s.lines.filter((l) => l.level === 'warn' && l.msg.includes('broker unavailable'))).toHaveLength(1)
    expect(s.lines.some((l) => l.msg.includes('refreshed again'))).toBe(true)
  })

  it('removes the .use of a revoked user with a clear log line', async () => {
    const s = setup((n) => (n === 1 ? token(1) : { kind: 'refused', reason: 'access_denied: credential revoked' }))
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    s.at(T0 + 600)
    const summary = await s.credmon.scan()
    expect(summary.removed).toBe(1)
    expect(existsSync(join(s.dir, 'alice', 'scitokens.use'))).toBe(false)
    expect(s.lines).toContainEqual({ level: 'warn', msg: 'credmon: removed alice/scitokens.use: the broker refused the credential (access_denied: credential revoked)' })
    // not asked again every minute
    s.at(T0 + 660)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(2)
  })

  // HTCondor's Vault credmon ends a credential the server has revoked by deleting both .top and .use; the
  // credd then no longer holds it, so the user's next condor_submit stores a new one. Our broker says so
  // only for a credential that is gone for good (the job-token 403's `credential` member); any other 403 is
  // a refusal an operator can lift, after which the kept .top lets the credmon resume with no user action.
  it('deletes .use and .top of a credential the broker says is gone, with one line saying the next submit registers again', async () => {
    const s = setup((n) => (n === 1 ? token(1) : { kind: 'refused', reason: 'access_denied: this credential has been revoked', gone: 'revoked' }))
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    s.at(T0 + 600)
    const summary = await s.credmon.scan()
    expect(summary).toEqual({ refreshed: 0, failed: 1, removed: 1 })
    expect(readdirSync(join(s.dir, 'alice'))).toEqual([])
    const lines = s.lines.filter((l) => l.msg.includes('alice/scitokens'))
    expect(lines).toEqual([{ level: 'warn', msg: 'credmon: removed alice/scitokens.use and alice/scitokens.top: the broker says the credential is revoked (access_denied: this credential has been revoked); alice\'s next condor_submit registers it again' }])
    // Nothing left to serve: the broker is not asked again, and a new registration's .top is served at once.
    s.at(T0 + 1300)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(2)
  })

  it('deletes the .top of a gone credential that has no .use yet (never registered at this broker)', async () => {
    const s = setup(() => ({ kind: 'refused', reason: 'access_denied: no credential is registered for this user and provider', gone: 'unknown' }))
    s.top('bob', 'scitokens')
    expect((await s.credmon.scan()).removed).toBe(1)
    expect(existsSync(join(s.dir, 'bob', 'scitokens.top'))).toBe(false)
    expect(s.lines).toContainEqual({ level: 'warn', msg: 'credmon: removed bob/scitokens.top: the broker says the credential is unknown (access_denied: no credential is registered for this user and provider); bob\'s next condor_submit registers it again' })
  })

  it('keeps the .top on a 403 that does not say the credential is gone (policy refusal): only .use goes, and it is asked again later', async () => {
    const refused: JobTokenResult = { kind: 'refused', reason: 'access_denied: the policy no longer grants this credential' }
    const s = setup((n) => (n === 1 ? token(1) : n === 2 ? refused : token(n)))
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    s.at(T0 + 600)
    expect((await s.credmon.scan()).removed).toBe(1)
    expect(readdirSync(join(s.dir, 'alice'))).toEqual(['scitokens.top'])
    // The operator fixes the policy: the kept .top is served again without the user doing anything.
    s.at(T0 + 600 + 600)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(3)
    expect(JSON.parse(readFileSync(join(s.dir, 'alice', 'scitokens.use'), 'utf8')).access_token).toBe('eyJ.tok3.sig')
  })

  it('on a refusal leaves a .use that is not a regular file alone, and still serves every other user', async () => {
    // docs/credmon.md: a refusal removes the credential's .use, a regular file the credmon wrote. Whatever
    // else sits at that name (here a directory) is not one, and one user's directory must not stop the
    // scan: bob's token is still written and CREDMON_COMPLETE still touched.
    const s = setup((n) => (n === 1 ? { kind: 'refused', reason: 'access_denied: the policy no longer grants this credential' } : token(n)))
    s.top('alice', 'scitokens')
    mkdirSync(join(s.dir, 'alice', 'scitokens.use'))
    s.top('bob', 'scitokens')
    const summary = await s.credmon.scan()
    expect(s.calls.map((c) => c.user)).toEqual(['alice', 'bob'])
    expect(statSync(join(s.dir, 'alice', 'scitokens.use')).isDirectory()).toBe(true)
    expect(JSON.parse(readFileSync(join(s.dir, 'bob', 'scitokens.use'), 'utf8')).access_token).toBe('eyJ.tok2.sig')
    expect(existsSync(join(s.dir, 'CREDMON_COMPLETE'))).toBe(true)
    expect(summary).toEqual({ refreshed: 1, failed: 1, removed: 0 })
  })

  it('never reads a .top or .use that is not a regular file (a FIFO would block every user\'s refresh)', async () => {
    // docs/credmon.md: the credmon reads the .top files the credd stores and the .use files it wrote
    // itself, regular files. Opening a FIFO for reading waits for a writer, synchronously, so one planted
    // at either name would stop the credmon for everybody. The reads are watched, and a FIFO is never
    // actually opened, so this test cannot hang.
    const fifoReads: string[] = []
    const watched: CredDirFs = {
      ...nodeCredDirFs,
      readText: (p, max) => {
        if (!lstatSync(p).isFIFO()) return nodeCredDirFs.readText(p, max)
        fifoReads.push(p)
        return undefined
      },
    }
    const s = setup((n) => token(n), { fs: watched, providers: ['scitokens', 'cms'] })
    mkdirSync(join(s.dir, 'alice'))
    const fifo = (path: string) => expect(spawnSync('mkfifo', [path]).status).toBe(0)
    fifo(join(s.dir, 'alice', 'scitokens.top'))
    s.top('alice', 'cms')
    fifo(join(s.dir, 'alice', 'cms.use'))
    // Newer than its .top, as a .use still in its first half of life would be after a restart.
    utimesSync(join(s.dir, 'alice', 'cms.use'), T0 + 10, T0 + 10)
    s.top('bob', 'scitokens')
    await s.credmon.scan()
    expect(fifoReads).toEqual([])
    expect(s.calls.map((c) => `${c.user}/${c.provider}`)).toEqual(['alice/cms', 'bob/scitokens'])
    expect(JSON.parse(readFileSync(join(s.dir, 'bob', 'scitokens.use'), 'utf8')).access_token).toBe('eyJ.tok2.sig')
  })

  it('ends only the files of the gone credential, and never follows a symbolic link', async () => {
    const s = setup(() => ({ kind: 'refused', reason: 'access_denied: revoked', gone: 'revoked' }), { providers: ['scitokens', 'cms'] })
    const outside = join(tempDir('ctb-credmon-outside-'), 'victim')
    writeFileSync(outside, 'not the credmon\'s')
    s.top('alice', 'scitokens')
    symlinkSync(outside, join(s.dir, 'alice', 'scitokens.use'))
    // Other files of the user, and another user's credential of the same name, are not this credential.
    writeFileSync(join(s.dir, 'alice', 'scitokens_store.use'), 'kept')
    writeFileSync(join(s.dir, 'alice', 'scitokens.top.bak'), 'kept')
    writeFileSync(join(s.dir, 'alice', 'cms.use'), 'kept')
    writeFileSync(join(s.dir, 'bob.mark'), '')
    s.top('bob', 'scitokens')
    await s.credmon.scan()
    expect(readFileSync(outside, 'utf8')).toBe('not the credmon\'s')
    expect(lstatSync(join(s.dir, 'alice', 'scitokens.use')).isSymbolicLink()).toBe(true)
    expect(readdirSync(join(s.dir, 'alice')).sort()).toEqual(['cms.use', 'scitokens.top.bak', 'scitokens.use', 'scitokens_store.use'])
    expect(existsSync(join(s.dir, 'bob', 'scitokens.top'))).toBe(true)
  })

  it('keeps a .top replaced while the broker was asked: a new registration is not ended by the old one\'s answer', async () => {
    let s!: ReturnType<typeof setup>
    s = setup((n) => {
      if (n > 1) return token(n)
      // condor_store_cred stores the user's new registration while our request is at the broker.
      s.at(T0 + 5)
      s.top('alice', 'scitokens', { broker_url: BROKER, user: 'alice', provider: 'scitokens', scopes: 'storage.read:/new' })
      return { kind: 'refused', reason: 'access_denied: revoked', gone: 'revoked' }
    })
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    expect(JSON.parse(readFileSync(join(s.dir, 'alice', 'scitokens.top'), 'utf8'))).toMatchObject({ scopes: 'storage.read:/new' })
    // The new registration is served at the next scan.
    s.at(T0 + 60)
    await s.credmon.scan()
    expect(s.calls.map((c) => c.query.scopes)).toEqual([undefined, 'storage.read:/new'])
    expect(existsSync(join(s.dir, 'alice', 'scitokens.use'))).toBe(true)
  })

  /**
   * The credd's store as it writes a .top: a temp file renamed over the old one (a new inode), here with the
   * same mtime as the old one, as on a file system that keeps whole seconds (ext3, many NFS servers) when
   * the store lands in the second the old .top was written in.
   */
  const replaceTopSameMtime = (s: ReturnType<typeof setup>, scopes: string) => {
    const top = join(s.dir, 'alice', 'scitokens.top')
    const mtime = statSync(top).mtime
    const tmp = join(s.dir, 'alice', 'scitokens.top.tmp')
    writeFileSync(tmp, JSON.stringify({ broker_url: BROKER, user: 'alice', provider: 'scitokens', scopes }), { mode: 0o600 })
    utimesSync(tmp, mtime, mtime)
    renameSync(tmp, top)
  }

  it('keeps a .top replaced while the broker was asked even when the new one has the old one\'s mtime (whole-second file systems)', async () => {
    let s!: ReturnType<typeof setup>
    s = setup((n) => {
      if (n > 1) return token(n)
      replaceTopSameMtime(s, 'storage.read:/new')
      return { kind: 'refused', reason: 'access_denied: revoked', gone: 'revoked' }
    })
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    expect(JSON.parse(readFileSync(join(s.dir, 'alice', 'scitokens.top'), 'utf8'))).toMatchObject({ scopes: 'storage.read:/new' })
  })

  it('writes no .use from an answer about a .top replaced with the same mtime, and serves the new one at the next scan', async () => {
    let s!: ReturnType<typeof setup>
    s = setup((n) => {
      if (n === 1) replaceTopSameMtime(s, 'storage.read:/new')
      return token(n)
    })
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    expect(existsSync(join(s.dir, 'alice', 'scitokens.use'))).toBe(false)
    await s.credmon.scan()
    expect(s.calls.map((c) => c.query.scopes)).toEqual([undefined, 'storage.read:/new'])
  })

  it('writes no .use for a credential whose .top was deleted while the broker was asked (no orphan token for the credd to hand out)', async () => {
    let s!: ReturnType<typeof setup>
    s = setup((n) => {
      // The user deletes the credential (condor_store_cred delete) while our request is at the broker, which
      // can take seconds when IAM refreshes slowly.
      if (n === 1) {
        unlinkSync(join(s.dir, 'alice', 'scitokens.top'))
        rmSync(join(s.dir, 'alice', 'scitokens.use'), { force: true })
      }
      return token(n)
    })
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    // Nothing would ever refresh or remove a .use without its .top: the credd would go on handing the deleted
    // credential's token to jobs until it expired.
    expect(readdirSync(join(s.dir, 'alice'))).toEqual([])
  })

  it('writes nothing through a user directory swapped for a symbolic link while the broker was asked', async () => {
    // The credential directory is writable by the credd's group; the credmon runs as root. Whoever swaps
    // alice/ for a link during the request (seconds) must not get root to write alice's token, or remove
    // files, in the directory the link names.
    const elsewhere = tempDir('ctb-credmon-elsewhere-')
    let s!: ReturnType<typeof setup>
    s = setup((n) => {
      if (n === 1) {
        // The same .top, so only the directory tells the swap.
        renameSync(join(s.dir, 'alice'), join(s.dir, 'alice.moved'))
        cpSync(join(s.dir, 'alice.moved', 'scitokens.top'), join(elsewhere, 'scitokens.top'), { preserveTimestamps: true })
        symlinkSync(elsewhere, join(s.dir, 'alice'))
      }
      return token(n)
    })
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    expect(readdirSync(elsewhere)).toEqual(['scitokens.top'])
  })

  it('writes no .use from an answer about a .top replaced while the broker was asked, and serves the new one next', async () => {
    let s!: ReturnType<typeof setup>
    s = setup((n) => {
      if (n === 1) {
        s.at(T0 + 5)
        s.top('alice', 'scitokens', { broker_url: BROKER, user: 'alice', provider: 'scitokens', scopes: 'storage.read:/new' })
      }
      return token(n)
    })
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    // The answer was for the old registration's scopes; the new .top is served at the next scan.
    expect(existsSync(join(s.dir, 'alice', 'scitokens.use'))).toBe(false)
    await s.credmon.scan()
    expect(s.calls.map((c) => c.query.scopes)).toEqual([undefined, 'storage.read:/new'])
    expect(JSON.parse(readFileSync(join(s.dir, 'alice', 'scitokens.use'), 'utf8')).access_token).toBe('eyJ.tok2.sig')
  })

  it('says so as an error, once, when a gone credential\'s .top cannot be removed, and does not ask every minute', async () => {
    const fs: CredDirFs = { ...nodeCredDirFs, removeFile: (p) => (p.endsWith('.top') ? false : nodeCredDirFs.removeFile(p)) }
    const s = setup(() => ({ kind: 'refused', reason: 'access_denied: revoked', gone: 'revoked' }), { fs })
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    s.at(T0 + 60)
    await s.credmon.scan()
    expect(s.calls).toHaveLength(1)
    expect(s.lines.filter((l) => l.level === 'error')).toEqual([{ level: 'error', msg: 'credmon: the broker says the credential is revoked (access_denied: revoked), but alice/scitokens.top could not be removed; the credd still holds it, so the user\'s next condor_submit will not register again' }])
  })

  it('keeps the .use and logs an error when the broker refuses the credmon\'s own token', async () => {
    const s = setup((n) => (n === 1 ? token(1) : { kind: 'unauthorized', reason: 'invalid_token: expired' }))
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    for (const dt of [600, 630, 690]) { s.at(T0 + dt); await s.credmon.scan() }
    expect(s.calls).toHaveLength(4)
    expect(JSON.parse(readFileSync(join(s.dir, 'alice', 'scitokens.use'), 'utf8')).access_token).toBe('eyJ.tok1.sig')
    expect(s.lines.filter((l) => l.level === 'error')).toHaveLength(1)
    expect(s.lines.find((l) => l.level === 'error')!.msg).toContain("refused the credmon's own token")
  })

  it('keeps the old .use when writing the new one fails, and retries', async () => {
    let failWrites = false
    const fs: CredDirFs = { ...nodeCredDirFs, writeAtomic: (...a) => { if (failWrites) throw Object.assign(new Error('disk full'), { code: 'ENOSPC' }); nodeCredDirFs.writeAtomic(...a) } }
    const s = setup((n) => token(n), { fs })
    s.top('alice', 'scitokens')
    await s.credmon.scan()
    failWrites = true
    s.at(T0 + 600)
    expect((await s.credmon.scan()).failed).toBe(1)
    expect(JSON.parse(readFileSync(join(s.dir, 'alice', 'scitokens.use'), 'utf8')).access_token).toBe('eyJ.tok1.sig')
    expect(s.lines.some((l) => l.msg === 'credmon: cannot write alice/scitokens.use: ENOSPC')).toBe(true)
    failWrites = false
    s.at(T0 + 630)
    await s.credmon.scan()
    expect(JSON.parse(readFileSync(join(s.dir, 'alice', 'scitokens.use'), 'utf8')).access_token).toBe('eyJ.tok3.sig')
  })
})

describe('credmon loop', () => {
  it('scans at start and again on wake (SIGHUP), touching CREDMON_COMPLETE each time', async () => {
    const s = setup((n) => token(n))
    const touches: number[] = []
    const fs: CredDirFs = { ...nodeCredDirFs, touch: (p) => { touches.push(1); nodeCredDirFs.touch(p) } }
    const credmon = new Credmon({ credDir: s.dir, providers: ['scitokens'], brokerUrl: BROKER, useFormat: 'json' }, { fs, clock: { now: () => T0 }, client: scriptedClient(() => token(1)).client, log: capturingLog().log })
    const loop = startCredmonLoop(credmon, 3600, capturingLog().log)
    for (let i = 0; i < 100 && touches.length < 1; i++) await new Promise((r) => setTimeout(r, 10))
    expect(touches).toHaveLength(1)
    loop.wake()
    for (let i = 0; i < 100 && touches.length < 2; i++) await new Promise((r) => setTimeout(r, 10))
    expect(touches).toHaveLength(2)
    await loop.stop()
    expect(touches).toHaveLength(2)
  })
})
