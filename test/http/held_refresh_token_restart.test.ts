import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import type { CredentialWrite } from '../../src/credentials/credential_store.ts'
import { systemClock } from '../../src/lib/clock.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { BrokerMetrics } from '../../src/metrics/broker_metrics.ts'
import { parsePrometheusText, sampleValue } from '../support/prometheus_text.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * IAM retires a refresh token as it rotates it (the msw IAM's default). A rotated token the store refuses
 * during an outage is held in memory and written again later; a broker restarted before that write lands
 * must take it up again, or its next refresh presents the retired token, IAM refuses it, and the
 * credential is revoked: the user would have to register again because of an outage and a restart.
 * The tests run in order: each closes the broker it started, as a stopping process does.
 */
const t = await useCredentialsApp()

function spillDir(): string {
  return join(t.config.data_dir, 'credentials', 'held')
}

/** The file a user's held cms token is spilled to (named by a digest of the credential, docs/job-credentials.md). */
function spillFileName(user: string): string {
  return `${createHash('sha256').update(`${user}\ncms`).digest('hex')}.json`
}

/**
 * A broker started on the same data directory with the store healthy again: it stores the held token
 * (the row's nonce moves off `before`), and the credential's next refresh is answered and leaves it live.
 */
async function expectRestartTakesUp(user: string, before: string): Promise<void> {
  const restarted = t.restartCredentials()
  try {
    expect(await until(async () => (await t.store.readCredential(user, 'cms'))!.sealed!.nonce !== before)).toBe(true)
    expect(await jobToken(restarted.app, user, '?minimum_seconds=999999')).toBe(200)
    expect(await t.store.readCredential(user, 'cms')).toMatchObject({ revoked: false })
  } finally {
    await restarted.credentials.close()
  }
}

/** The spilled tokens' files (not the lock, nor a temp file). */
function spilled(): string[] {
  try { return readdirSync(spillDir()).filter((n) => !n.startsWith('.')) } catch { return [] }
}

async function register(user: string): Promise<string> {
  expect((await t.register(await t.userToken({ preferred_username: user, sub: `${user}-sub` }), { provider: 'cms' })).status).toBe(201)
  return (await t.store.readCredential(user, 'cms'))!.sealed!.nonce
}

/** Runs `fn` while the store refuses every rotation (an outage); every other write goes through. */
async function duringOutage(fn: () => Promise<void>): Promise<void> {
  const write = t.store.writeCredential.bind(t.store)
  t.store.writeCredential = async (w: CredentialWrite, e) => {
    if (w.action === 'rotate') throw new Error('SQLITE_BUSY: database is locked')
    return write(w, e)
  }
  try { await fn() } finally { t.store.writeCredential = write }
}

async function jobToken(app: { request: (path: string, init: RequestInit) => Response | Promise<Response> }, user: string, query = ''): Promise<number> {
  return (await app.request(`/v1/credentials/${user}/cms/token${query}`, { headers: { authorization: `Bearer ${t.creddToken()}` } })).status
}

/** Bounded poll. */
async function until(check: () => Promise<boolean> | boolean): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return false
}

it('is kept on disk while the store refuses it, and a restarted broker stores and uses it', async () => {
  const before = await register('rosa')
  // What an admin's Prometheus sees meanwhile (the gauge serve registers).
  const metrics = new BrokerMetrics({ clock: systemClock, policy: () => { throw new Error('no label needs the policy') }, sources: { unstoredRefreshTokens: () => t.credentials.unstoredRefreshTokens() } })
  const gauge = async () => {
    const samples = parsePrometheusText(await metrics.registry.metrics())
    return [sampleValue(samples, 'ctb_refresh_tokens_unstored', { copy: 'memory' }), sampleValue(samples, 'ctb_refresh_tokens_unstored', { copy: 'disk' })]
  }
  expect(await gauge()).toEqual([0, 0])
  await duringOutage(async () => {
    expect(await jobToken(t.app, 'rosa')).toBe(200)
    // The promise: by the time the request that rotated the token is answered after a failed store write,
    // the held token is already on disk, whole (a broker killed right after the answer keeps it).
    expect(spilled()).toEqual([spillFileName('rosa')])
    expect(JSON.parse(readFileSync(join(spillDir(), spillFileName('rosa')), 'utf8'))).toMatchObject({ user: 'rosa', provider: 'cms', previousNonce: before })
    expect(await gauge()).toEqual([1, 1])
    // Shutdown: one last write, refused too; the token stays on disk, sealed, owner-only.
    await t.credentials.close()
  })
  expect((await t.store.readCredential('rosa', 'cms'))!.sealed!.nonce).toBe(before)
  const files = spilled()
  expect(files).toHaveLength(1)
  const file = join(spillDir(), files[0]!)
  expect(statSync(file).mode & 0o777).toBe(0o600)
  expect(statSync(spillDir()).mode & 0o777).toBe(0o700)
  const body = readFileSync(file, 'utf8')
  expect(JSON.parse(body)).toMatchObject({ user: 'rosa', provider: 'cms', previousNonce: before })
  // The one refresh token IAM now honours (the rotated one) is not in the file in clear.
  expect(t.iam.liveRefreshTokens).toHaveLength(1)
  expect(body).not.toContain(t.iam.liveRefreshTokens[0]!)

  // The broker starts again on the same data directory and database, the store healthy again.
  const restarted = t.restartCredentials()
  try {
    expect(await until(async () => (await t.store.readCredential('rosa', 'cms'))!.sealed!.nonce !== before)).toBe(true)
    // The file goes once the store holds the token: its removal, off the event loop, follows the commit.
    expect(await until(() => spilled().length === 0)).toBe(true)
    expect(restarted.credentials.unstoredRefreshTokens()).toEqual({ memory: 0, disk: 0 })
    const rotated = (await t.store.query({ limit: 50, type: 'credential.rotated' })).records.map((r) => r.event)
    expect(rotated.filter((e) => (e.detail as { user?: string }).user === 'rosa')).toHaveLength(1)
    // Its next refresh presents the token IAM expects: the credential lives on.
    const refreshes = t.iamRequests('refresh_token').length
    expect(await jobToken(restarted.app, 'rosa', '?minimum_seconds=999999')).toBe(200)
    expect(t.iamRequests('refresh_token')).toHaveLength(refreshes + 1)
    expect(await t.store.readCredential('rosa', 'cms')).toMatchObject({ revoked: false })
  } finally {
    await restarted.credentials.close()
  }
})

it('is dropped by the restarted broker, file and all, when the credential was registered afresh before it was stored', async () => {
  await register('sam')
  const first = t.restartCredentials()
  await duringOutage(async () => {
    expect(await jobToken(first.app, 'sam')).toBe(200)
    await first.credentials.close()
  })
  expect(spilled()).toHaveLength(1)
  // The user registers again while no broker runs: the new registration's token wins.
  const registered = await register('sam')

  const restarted = t.restartCredentials()
  try {
    expect(await until(() => spilled().length === 0)).toBe(true)
    expect((await t.store.readCredential('sam', 'cms'))!.sealed!.nonce).toBe(registered)
    expect(await jobToken(restarted.app, 'sam', '?minimum_seconds=999999')).toBe(200)
    expect(await t.store.readCredential('sam', 'cms')).toMatchObject({ revoked: false })
  } finally {
    await restarted.credentials.close()
  }
})

const sleepers: Array<ReturnType<typeof spawn>> = []
afterAll(() => { for (const p of sleepers) p.kill() })

it('is left alone by a broker started while another live process holds the directory', async () => {
  const before = await register('tilda')
  const first = t.restartCredentials()
  await duringOutage(async () => {
    expect(await jobToken(first.app, 'tilda')).toBe(200)
    await first.credentials.close()
  })
  const [file] = spilled()
  expect(file).toBeDefined()
  // Another broker process (a live pid of ours) has the directory.
  const other = spawn('sleep', ['30'], { stdio: 'ignore' })
  sleepers.push(other)
  writeFileSync(join(spillDir(), '.lock'), `${other.pid}\n`, { mode: 0o600 })

  const second = t.restartCredentials()
  await new Promise((resolve) => setTimeout(resolve, 500))
  expect(spilled()).toEqual([file])
  expect((await t.store.readCredential('tilda', 'cms'))!.sealed!.nonce).toBe(before)
  await second.credentials.close()
  expect(readFileSync(join(spillDir(), '.lock'), 'utf8')).toBe(`${other.pid}\n`)

  // That process is gone: its lock is stale, and the next start takes the token up.
  other.kill()
  await new Promise((resolve) => other.once('exit', resolve))
  const third = t.restartCredentials()
  try {
    expect(await until(async () => (await t.store.readCredential('tilda', 'cms'))!.sealed!.nonce !== before)).toBe(true)
    expect(await until(() => spilled().length === 0)).toBe(true)
  } finally {
    await third.credentials.close()
  }
})

it('does not take up a spilled token the credential key does not open for that credential', async () => {
  const before = await register('ulla')
  const c = (await t.store.readCredential('ulla', 'cms'))!
  // Well-formed and filed under ulla's name, but sealed for someone else (here: nothing the key opens).
  const forged = { user: 'ulla', provider: 'cms', scopes: c.scopes, audience: c.audience, caller: { iss: c.iss, sub: c.sub }, createdAt: c.createdAt, previousNonce: before, sealed: { ...c.sealed!, ciphertext: Buffer.alloc(48, 7).toString('base64') }, rotatedAt: c.createdAt + 1 }
  const file = join(spillDir(), spillFileName('ulla'))
  writeFileSync(file, JSON.stringify(forged), { mode: 0o600 })
  const lines: string[] = []
  const restarted = t.restartCredentials(createLogger((l) => lines.push(l)))
  try {
    await new Promise((resolve) => setTimeout(resolve, 400))
    expect((await t.store.readCredential('ulla', 'cms'))!.sealed!.nonce).toBe(before)
    expect(lines.join('\n')).toContain('ignoring a spilled refresh token that the credential key does not open')
    expect(await jobToken(restarted.app, 'ulla')).toBe(200)
  } finally {
    await restarted.credentials.close()
  }
})

it('is on disk too while its store write hangs, so a broker killed meanwhile does not lose it', { timeout: 20_000 }, async () => {
  // IAM has already retired the old refresh token when the store is asked to take the new one: a write
  // that neither lands nor fails (a database hung in a failover) leaves the one token IAM honours in
  // memory only, and a broker killed then (a liveness probe) would lose the credential with it.
  const before = await register('vito')
  const first = t.restartCredentials()
  const write = t.store.writeCredential.bind(t.store)
  let release!: () => void
  const hung = new Promise<void>((resolve) => { release = resolve })
  t.store.writeCredential = async (w: CredentialWrite, e) => {
    if (w.action === 'rotate' && w.user === 'vito') await hung
    return write(w, e)
  }
  const answer = jobToken(first.app, 'vito')
  try {
    const vitoFile = spillFileName('vito')
    expect(await until(() => spilled().includes(vitoFile))).toBe(true)
    // The first broker is killed here; the next one starts on the same data directory, the store healthy.
    t.store.writeCredential = write
    await expectRestartTakesUp('vito', before)
  } finally {
    t.store.writeCredential = write
    release()
    await answer
    await first.credentials.close()
  }
})

it('puts a newer rotation on disk while its write hangs, though the file still holds the one it superseded', { timeout: 20_000 }, async () => {
  // A held (spilled) token is used for the next refresh; IAM rotates it again and retires it. While the
  // write of the newer one hangs, the file must hold the newer one: a broker killed then takes the file up,
  // and a retired token there would be refused by IAM at the next refresh and the credential revoked.
  const before = await register('wanda')
  const first = t.restartCredentials()
  const write = t.store.writeCredential.bind(t.store)
  const file = join(spillDir(), spillFileName('wanda'))
  const spilledNonce = (): string | undefined => { try { return (JSON.parse(readFileSync(file, 'utf8')) as { sealed: { nonce: string } }).sealed.nonce } catch { return undefined } }
  let release!: () => void
  const hung = new Promise<void>((resolve) => { release = resolve })
  let answer: Promise<number> | undefined
  try {
    let held: string | undefined
    // The store refuses the first rotation (held and spilled), then hangs on any newer one.
    t.store.writeCredential = async (w: CredentialWrite, e) => {
      if (w.action === 'rotate' && w.user === 'wanda') {
        if (held === undefined || w.sealed.nonce === held) throw new Error('SQLITE_BUSY: database is locked')
        await hung
      }
      return write(w, e)
    }
    expect(await jobToken(first.app, 'wanda')).toBe(200)
    held = spilledNonce()
    expect(held).toBeDefined()
    answer = jobToken(first.app, 'wanda', '?minimum_seconds=999999')
    expect(await until(() => { const n = spilledNonce(); return n !== undefined && n !== held })).toBe(true)
    // The first broker is killed here; the next one starts on the same data directory, the store healthy.
    t.store.writeCredential = write
    await expectRestartTakesUp('wanda', before)
  } finally {
    t.store.writeCredential = write
    release()
    await answer
    await first.credentials.close()
  }
})

it('does not tell the operator a hanging write\'s token is on disk when another process holds the directory', { timeout: 20_000 }, async () => {
  // docs/job-credentials.md: only the process holding the directory spills. Told "kept on disk", an operator
  // would take a restart for safe while the one token IAM honours is in this process's memory only.
  await register('xia')
  const other = spawn('sleep', ['30'], { stdio: 'ignore' })
  sleepers.push(other)
  writeFileSync(join(spillDir(), '.lock'), `${other.pid}\n`, { mode: 0o600 })
  const lines: string[] = []
  const first = t.restartCredentials(createLogger((l) => lines.push(l)))
  const write = t.store.writeCredential.bind(t.store)
  let release!: () => void
  const hung = new Promise<void>((resolve) => { release = resolve })
  t.store.writeCredential = async (w: CredentialWrite, e) => {
    if (w.action === 'rotate' && w.user === 'xia') await hung
    return write(w, e)
  }
  const answer = jobToken(first.app, 'xia')
  try {
    expect(await until(() => lines.some((l) => l.includes('store write is slow')))).toBe(true)
    expect(spilled()).not.toContain(spillFileName('xia'))
    expect(lines.filter((l) => l.includes('store write is slow') && l.includes('on disk'))).toEqual([])
  } finally {
    t.store.writeCredential = write
    release()
    await answer
    await first.credentials.close()
    other.kill()
    await new Promise((resolve) => other.once('exit', resolve))
  }
})
