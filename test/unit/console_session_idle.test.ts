// A console session ends after `idleSeconds` without a request, enforced on the server (the row's last
// activity), and still at its absolute expiry however active it is: the two limits OWASP ASVS v4 §3.3.2
// asks of a session, and what Keycloak's admin console calls SSO Session Idle / Max.
import { describe, expect, it } from 'vitest'
import type { SessionWrite } from '../../src/console/session_store.ts'
import { ConsoleSessions } from '../../src/console/sessions.ts'
import { sessionDigest } from '../../src/console/session_seal.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const NOW = 1_800_000_000
const IDLE = 1800

function counted(): { store: MemoryStore; writes: SessionWrite[] } {
  const store = new MemoryStore()
  const writes: SessionWrite[] = []
  const write = store.writeConsoleSession.bind(store)
  store.writeConsoleSession = async (w) => { writes.push(w); return write(w) }
  return { store, writes }
}

describe('console session idle timeout', () => {
  it('ends a session idle for idleSeconds, and removes its row', async () => {
    const { store } = counted()
    const sessions = new ConsoleSessions(store, { idleSeconds: IDLE })
    const { id } = await sessions.create({ bearer: 'b', principal: 'alice', expiresAt: NOW + 8 * 3600 }, NOW)
    expect(await sessions.get(id, NOW + IDLE - 1)).toBeDefined()
    // The read just above was activity: idle counts from it.
    expect(await sessions.get(id, NOW + 2 * IDLE - 2)).toBeDefined()
    expect(await sessions.get(id, NOW + 3 * IDLE)).toBeUndefined()
    expect(store.rawSessions().size).toBe(0)
    // Gone for good: an earlier clock (another replica) does not bring it back.
    expect(await sessions.get(id, NOW + 10)).toBeUndefined()
  })

  it('a session idle for exactly idleSeconds is over', async () => {
    const sessions = new ConsoleSessions(new MemoryStore(), { idleSeconds: IDLE })
    const { id } = await sessions.create({ bearer: 'b', principal: 'alice', expiresAt: NOW + 8 * 3600 }, NOW)
    expect(await sessions.get(id, NOW + IDLE)).toBeUndefined()
  })

  it('keeps the absolute limit: an admin active every minute is still signed out at expiresAt', async () => {
    const sessions = new ConsoleSessions(new MemoryStore(), { idleSeconds: IDLE })
    const { id } = await sessions.create({ bearer: 'b', principal: 'alice', expiresAt: NOW + 3600 }, NOW)
    for (let t = NOW + 60; t < NOW + 3600; t += 60) expect(await sessions.get(id, t), String(t - NOW)).toBeDefined()
    expect(await sessions.get(id, NOW + 3600)).toBeUndefined()
  })

  it('writes activity at most once a minute, not on every click', async () => {
    const { store, writes } = counted()
    const sessions = new ConsoleSessions(store, { idleSeconds: IDLE })
    const { id } = await sessions.create({ bearer: 'b', principal: 'alice', expiresAt: NOW + 8 * 3600 }, NOW)
    writes.length = 0
    for (let t = NOW; t < NOW + 60; t += 5) await sessions.get(id, t)
    expect(writes).toEqual([])
    await sessions.get(id, NOW + 60)
    expect(writes).toEqual([{ action: 'touch', idSha256: sessionDigest(id), at: NOW + 60 }])
    expect(store.rawSessions().get(sessionDigest(id))!.lastSeenAt).toBe(NOW + 60)
  })

  it('fails closed when the activity cannot be written: the session stands now, and ends idleSeconds after the last write that landed', async () => {
    const { store } = counted()
    const sessions = new ConsoleSessions(store, { idleSeconds: IDLE })
    const { id } = await sessions.create({ bearer: 'b', principal: 'alice', expiresAt: NOW + 8 * 3600 }, NOW)
    const write = store.writeConsoleSession
    store.writeConsoleSession = async (w) => { if (w.action === 'touch') throw new Error('store down'); return write(w) }
    expect(await sessions.get(id, NOW + 600)).toBeDefined()
    store.writeConsoleSession = write
    expect(await sessions.get(id, NOW + IDLE)).toBeUndefined()
  })

  it('without idleSeconds a session lives to its expiry (the broker always sets one; this is the store-level default)', async () => {
    const sessions = new ConsoleSessions(new MemoryStore())
    const { id } = await sessions.create({ bearer: 'b', principal: 'alice', expiresAt: NOW + 8 * 3600 }, NOW)
    expect(await sessions.get(id, NOW + 8 * 3600 - 1)).toBeDefined()
  })
})
