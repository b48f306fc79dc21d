import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { KeyStore } from '../../src/keys/key_store.ts'
import { tempDir } from '../support/tmp.ts'

const t = 1_800_000_000

// In a container the broker is pid 1 at every start, and a systemd restart may hand the new serve the
// pid its killed predecessor had. A lock a SIGKILLed or OOM-killed change left behind then names a pid
// that runs again: the new process itself, which is not changing the keyring. Taking it for a change in
// progress refused the restarted serve's first key for good (a crash loop) and every later keys rotate.
describe('a keyring lock left by an earlier process whose pid runs again', () => {
  it('is taken over when it names this very process (a container broker, pid 1 again after an unclean stop)', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    // What 8fd0271 writes: the pid alone.
    writeFileSync(join(dir, '.keyring.lock'), `${process.pid}\n`, { mode: 0o600 })
    const r = new KeyStore(dir, { lockWaitMs: 300 }).ensureJwtKey('ES256', t)
    expect(r.created).toBe(true)
    expect(existsSync(join(dir, '.keyring.lock'))).toBe(false)
  })

  it('is taken over when its pid now belongs to a process that started after the lock was written', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    // The parent of this test runs, and did not start at clock tick 1 of this boot.
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    writeFileSync(join(dir, '.keyring.lock'), `${JSON.stringify({ pid: process.ppid, host: hostname(), boot: bootId, start: '1' })}\n`, { mode: 0o600 })
    const r = new KeyStore(dir, { lockWaitMs: 300 }).ensureJwtKey('ES256', t)
    expect(r.created).toBe(true)
    expect(existsSync(join(dir, '.keyring.lock'))).toBe(false)
  })

  it('is taken over when it was written before this host last booted', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    const start = readFileSync(`/proc/${process.ppid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]
    writeFileSync(join(dir, '.keyring.lock'), `${JSON.stringify({ pid: process.ppid, host: hostname(), boot: '00000000-0000-0000-0000-000000000000', start })}\n`, { mode: 0o600 })
    expect(new KeyStore(dir, { lockWaitMs: 300 }).ensureJwtKey('ES256', t).created).toBe(true)
  })

  it('is still waited on and refused while the process that wrote it runs', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    const start = readFileSync(`/proc/${process.ppid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]
    writeFileSync(join(dir, '.keyring.lock'), `${JSON.stringify({ pid: process.ppid, host: hostname(), boot: bootId, start })}\n`, { mode: 0o600 })
    expect(() => new KeyStore(dir, { lockWaitMs: 200 }).ensureJwtKey('ES256', t)).toThrow(new RegExp(`being changed by process ${process.ppid}`))
  })
})

// Two replicas sharing keys/ over NFS: a pid from another host says nothing about the processes here
// (kill(pid, 0) answers for this host's). Taking such a lock over because no local process has its pid
// would let two changes interleave again; it is waited on and refused, naming the host to look on.
describe('a keyring lock written on another host', () => {
  it('is not taken over on the strength of this host\'s process table, and the refusal names that host', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    writeFileSync(join(dir, '.keyring.lock'), `${JSON.stringify({ pid: 2 ** 22 + 1, host: 'replica-b.example.org' })}\n`, { mode: 0o600 })
    expect(() => new KeyStore(dir, { lockWaitMs: 200 }).ensureJwtKey('ES256', t)).toThrow(/process 4194305 on replica-b\.example\.org/)
    expect(existsSync(join(dir, '.keyring.lock'))).toBe(true)
  })

  it('is not taken for this process\'s own when it names this pid in another pid namespace (a container sharing the host name)', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    // Another container's broker, pid 1 in its own namespace as this one is in its: alive, changing the keyring.
    writeFileSync(join(dir, '.keyring.lock'), `${JSON.stringify({ pid: process.pid, host: hostname(), pidns: 'pid:[1]' })}\n`, { mode: 0o600 })
    expect(() => new KeyStore(dir, { lockWaitMs: 200 }).ensureJwtKey('ES256', t)).toThrow(/being changed by process/)
  })

  it('is refused in one line when the host it names holds a line break', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    writeFileSync(join(dir, '.keyring.lock'), `${JSON.stringify({ pid: 7, host: 'replica-b\ncondor-token-broker: all good' })}\n`, { mode: 0o600 })
    expect(() => new KeyStore(dir, { lockWaitMs: 200 }).ensureJwtKey('ES256', t)).toThrow(/^[^\n]*process 7 on replica-b\?condor-token-broker: all good \(/)
  })

  it('is refused naming that pid namespace, not as a pid an operator would look up in this one (pid 1 is this broker)', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    // What a container's broker killed while making its first key leaves for the restarted container.
    writeFileSync(join(dir, '.keyring.lock'), `${JSON.stringify({ pid: 1, host: hostname(), pidns: 'pid:[4026532999]' })}\n`, { mode: 0o600 })
    expect(() => new KeyStore(dir, { lockWaitMs: 200 }).ensureJwtKey('ES256', t)).toThrow(/being changed by process 1 in pid namespace pid:\[4026532999\] \(/)
  })
})

// Neither a lock from another host or pid namespace (a container restarted after an OOM kill has a new
// one) nor an empty one (8fd0271 created the file, then wrote the pid: a crash or a full disk between
// the two left it empty) names a process this one can look for. A change takes seconds at most, so one
// older than two minutes is left over and taken over, rather than refusing every later change for good.
describe('a keyring lock whose holder cannot be looked for', () => {
  const old = (path: string) => { const s = (Date.now() - 121_000) / 1000; utimesSync(path, s, s) }

  it('is taken over once it is more than two minutes old, from another host', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    const lock = join(dir, '.keyring.lock')
    writeFileSync(lock, `${JSON.stringify({ pid: 1, host: 'replica-b.example.org' })}\n`, { mode: 0o600 })
    old(lock)
    expect(new KeyStore(dir, { lockWaitMs: 200 }).ensureJwtKey('ES256', t).created).toBe(true)
    expect(existsSync(lock)).toBe(false)
  })

  it('is taken over once it is more than two minutes old when it is empty, and waited on before', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    const lock = join(dir, '.keyring.lock')
    writeFileSync(lock, '', { mode: 0o600 })
    expect(() => new KeyStore(dir, { lockWaitMs: 200 }).ensureJwtKey('ES256', t)).toThrow(/being changed by another process/)
    old(lock)
    expect(new KeyStore(dir, { lockWaitMs: 200 }).ensureJwtKey('ES256', t).created).toBe(true)
  })
})

// keys rotate --compromised reads each unlisted jwt/<name>.pem to see whether it is a key of the broker's
// own (f5fa30a). A FIFO under that name blocked the read until something wrote to it, with the keyring lock
// held: the rotation that answers a stolen key never ended, and every change after it waited. Key files
// are otherwise opened non-blocking and refused when not regular files (readSecretFile).
describe('keys rotate --compromised and a FIFO named like a key file in jwt/', () => {
  it('leaves it in place and ends', () => {
    const dir = join(tempDir(), 'keys')
    new KeyStore(dir).ensureJwtKey('ES256', t)
    expect(spawnSync('mkfifo', [join(dir, 'jwt', 'notes.pem')]).status).toBe(0)
    // In a child: a read blocked on the FIFO cannot be interrupted from this process.
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', `
      const { KeyStore } = await import(${JSON.stringify(new URL('../../src/keys/key_store.ts', import.meta.url).href)})
      process.stdout.write(JSON.stringify(new KeyStore(${JSON.stringify(dir)}).rotateCompromised('ES256', ${t + 10}).left))
    `], { encoding: 'utf8', timeout: 5_000 })
    expect(child.signal).toBeNull()
    expect(JSON.parse(child.stdout)).toEqual([join(dir, 'jwt', 'notes.pem')])
  }, 20_000)
})

// The lock's holder is read from the file at keys/.keyring.lock. Something that is no regular file there (a
// FIFO) blocked that read until a writer came: a starting serve hung instead of waiting 10 s and saying why.
describe('a keyring lock that is no regular file', () => {
  it('is waited on and refused like any lock whose holder cannot be told, and the change ends', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    expect(spawnSync('mkfifo', [join(dir, '.keyring.lock')]).status).toBe(0)
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', `
      const { KeyStore } = await import(${JSON.stringify(new URL('../../src/keys/key_store.ts', import.meta.url).href)})
      try { new KeyStore(${JSON.stringify(dir)}, { lockWaitMs: 200 }).ensureJwtKey('ES256', ${t}) } catch (err) { process.stdout.write(err.message) }
    `], { encoding: 'utf8', timeout: 5_000 })
    expect(child.signal).toBeNull()
    expect(child.stdout).toMatch(/being changed by another process/)
  }, 20_000)
})

// Replicas sharing keys/ over NFS: a file's mtime is set by the file server's clock, not this host's.
// A lock's age read as this host's clock minus the server's mtime is off by their skew: a host whose
// clock runs two minutes ahead took every fresh lock of another replica for stale and two changes ran.
describe('a keyring lock on a file system whose clock differs from this host\'s', () => {
  it('is not taken over while fresh when this host\'s clock runs 200 s ahead of the file system\'s', () => {
    const dir = join(tempDir(), 'keys')
    mkdirSync(dir, { mode: 0o700 })
    const lock = join(dir, '.keyring.lock')
    writeFileSync(lock, `${JSON.stringify({ pid: 4242, host: 'replica-b.example.org' })}\n`, { mode: 0o600 })
    const real = Date.now.bind(Date)
    const skew = vi.spyOn(Date, 'now').mockImplementation(() => real() + 200_000)
    try {
      expect(() => new KeyStore(dir, { lockWaitMs: 200 }).ensureJwtKey('ES256', t)).toThrow(/process 4242 on replica-b\.example\.org/)
    } finally {
      skew.mockRestore()
    }
    expect(existsSync(lock)).toBe(true)
  })
})

// A restart under systemd (Restart=on-failure) after the broker was killed: the new serve is another
// process on this host and in this pid namespace, and the killed one no longer runs.
describe('a restart after the process changing the keyring was SIGKILLed', () => {
  const keyStoreUrl = JSON.stringify(new URL('../../src/keys/key_store.ts', import.meta.url).href)

  it('finds the lock that change left and takes it over at once, not after the 10 s wait', () => {
    const dir = join(tempDir(), 'keys')
    const killed = spawnSync(process.execPath, ['--input-type=module', '-e', `
      const { KeyStore } = await import(${keyStoreUrl})
      new KeyStore(${JSON.stringify(dir)}, { seam: { afterKeyFileWritten: () => process.kill(process.pid, 'SIGKILL') } }).ensureJwtKey('ES256', ${t})
    `], { encoding: 'utf8', timeout: 10_000 })
    expect(killed.signal).toBe('SIGKILL')
    expect(existsSync(join(dir, '.keyring.lock'))).toBe(true)
    const started = Date.now()
    expect(new KeyStore(dir).ensureJwtKey('ES256', t).created).toBe(true)
    expect(Date.now() - started).toBeLessThan(2_000)
    expect(existsSync(join(dir, '.keyring.lock'))).toBe(false)
  }, 20_000)

  it('finds no lock when it was killed outside a change', () => {
    const dir = join(tempDir(), 'keys')
    const killed = spawnSync(process.execPath, ['--input-type=module', '-e', `
      const { KeyStore } = await import(${keyStoreUrl})
      new KeyStore(${JSON.stringify(dir)}).ensureJwtKey('ES256', ${t})
      process.kill(process.pid, 'SIGKILL')
    `], { encoding: 'utf8', timeout: 10_000 })
    expect(killed.signal).toBe('SIGKILL')
    expect(readdirSync(dir).filter((f) => f.startsWith('.keyring.lock'))).toEqual([])
  }, 20_000)
})
