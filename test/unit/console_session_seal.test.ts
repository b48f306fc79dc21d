// A console session's row holds no usable secret: the bearer opens only with the cookie's id, and a row
// changed in any way fails closed (the browser is signed out, the row removed).
import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { openBearer, openSecrets, sealBearer, sealSecrets, sessionCsrf, sessionDigest } from '../../src/console/session_seal.ts'
import { ConsoleSessions } from '../../src/console/sessions.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const NOW = 1_800_000_000
const BEARER = 'eyJhbGciOiJSUzI1NiJ9.admin-access-token.signature'
const id = () => randomBytes(32).toString('base64url')

describe('sealing a session bearer under the session id', () => {
  it('opens with the id it was sealed under, and with no other id, nor with the digest the row holds', () => {
    const sid = id()
    const binding = { idSha256: sessionDigest(sid), principal: 'https://iam.example.org/,alice', expiresAt: NOW + 3600 }
    const sealed = sealBearer(sid, BEARER, binding)
    expect(sealed).not.toContain(BEARER)
    expect(Buffer.from(sealed.slice(3), 'base64url').toString('latin1')).not.toContain(BEARER)
    expect(openBearer(sid, sealed, binding)).toBe(BEARER)
    expect(openBearer(id(), sealed, binding)).toBeUndefined()
    // Someone holding only the database has the digest: it is not the key material.
    expect(openBearer(binding.idSha256, sealed, binding)).toBeUndefined()
  })

  it('stores the id as its SHA-256 and derives a CSRF token that is neither the id nor its digest', () => {
    const sid = id()
    expect(sessionDigest(sid)).toBe(createHash('sha256').update(sid).digest('base64url'))
    const csrf = sessionCsrf(sid)
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(csrf).toBe(sessionCsrf(sid))
    expect([sid, sessionDigest(sid), sessionCsrf(id())]).not.toContain(csrf)
  })

  it('refuses a sealed bearer whose ciphertext, principal, expiry or digest was changed', () => {
    const sid = id()
    const binding = { idSha256: sessionDigest(sid), principal: 'alice', expiresAt: NOW + 3600 }
    const sealed = sealBearer(sid, BEARER, binding)
    const raw = Buffer.from(sealed.slice(3), 'base64url')
    for (const at of [0, 12, raw.length - 1]) {
      const flipped = Buffer.from(raw)
      flipped[at]! ^= 1
      expect(openBearer(sid, `v1.${flipped.toString('base64url')}`, binding)).toBeUndefined()
    }
    expect(openBearer(sid, sealed, { ...binding, principal: 'mallory' })).toBeUndefined()
    expect(openBearer(sid, sealed, { ...binding, expiresAt: NOW + 86400 * 365 })).toBeUndefined()
    expect(openBearer(sid, sealed, { ...binding, idSha256: sessionDigest(id()) })).toBeUndefined()
    expect(openBearer(sid, 'v2.' + sealed.slice(3), binding)).toBeUndefined()
    expect(openBearer(sid, 'v1.AAAA', binding)).toBeUndefined()
  })
})

describe('sealing the ID token beside the bearer (v2)', () => {
  const ID_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.id-token-of-alice.signature'
  it('opens both with the id, neither without it; the ID token does not show in the seal', () => {
    const sid = id()
    const binding = { idSha256: sessionDigest(sid), principal: 'alice', expiresAt: NOW + 3600 }
    const sealed = sealSecrets(sid, { bearer: BEARER, idToken: ID_TOKEN }, binding)
    expect(sealed.startsWith('v2.')).toBe(true)
    expect(Buffer.from(sealed.slice(3), 'base64url').toString('latin1')).not.toContain('id-token-of-alice')
    expect(openSecrets(sid, sealed, binding)).toEqual({ bearer: BEARER, idToken: ID_TOKEN })
    expect(openSecrets(id(), sealed, binding)).toBeUndefined()
    expect(openSecrets(sid, sealed, { ...binding, principal: 'mallory' })).toBeUndefined()
  })
  it('still opens the v1 seals of earlier brokers (bearer only), and not a seal relabelled to the other format', () => {
    const sid = id()
    const binding = { idSha256: sessionDigest(sid), principal: 'alice', expiresAt: NOW + 3600 }
    const v1 = sealBearer(sid, BEARER, binding)
    expect(openSecrets(sid, v1, binding)).toEqual({ bearer: BEARER })
    expect(openSecrets(sid, `v2.${v1.slice(3)}`, binding)).toBeUndefined()
    const v2 = sealSecrets(sid, { bearer: BEARER }, binding)
    expect(openSecrets(sid, v2, binding)).toEqual({ bearer: BEARER })
    expect(openSecrets(sid, `v1.${v2.slice(3)}`, binding)).toBeUndefined()
  })
})

describe('console sessions over the store', () => {
  it('keeps only the digest, the principal, the expiry and the sealed bearer; the cookie id brings the bearer back', async () => {
    const store = new MemoryStore()
    const sessions = new ConsoleSessions(store)
    const { id: sid, session } = await sessions.create({ bearer: BEARER, principal: 'alice', expiresAt: NOW + 3600 }, NOW)
    const rows = [...store.rawSessions().values()]
    expect(rows).toEqual([{ idSha256: sessionDigest(sid), principal: 'alice', createdAt: NOW, lastSeenAt: NOW, expiresAt: NOW + 3600, sealed: expect.stringMatching(/^v2\./) }])
    expect(JSON.stringify(rows)).not.toContain(BEARER)
    expect(JSON.stringify(rows)).not.toContain(sid)
    expect(JSON.stringify(rows)).not.toContain(session.csrf)
    expect(await sessions.get(sid, NOW + 1)).toEqual({ bearer: BEARER, principal: 'alice', csrf: session.csrf, expiresAt: NOW + 3600 })
    expect(await sessions.get(id(), NOW + 1)).toBeUndefined()
    expect(await sessions.get('not-a-session-id', NOW + 1)).toBeUndefined()
  })

  it('signs out a session whose row was tampered with, and removes the row', async () => {
    const store = new MemoryStore()
    const sessions = new ConsoleSessions(store)
    const { id: sid } = await sessions.create({ bearer: BEARER, principal: 'alice', expiresAt: NOW + 3600 }, NOW)
    const row = store.rawSessions().get(sessionDigest(sid))!
    row.principal = 'mallory'
    expect(await sessions.get(sid, NOW + 1)).toBeUndefined()
    expect(store.rawSessions().size).toBe(0)

    // Another session's sealed bearer copied into this row does not open either.
    const a = await sessions.create({ bearer: 'bearer-a', principal: 'alice', expiresAt: NOW + 3600 }, NOW)
    const b = await sessions.create({ bearer: 'bearer-b', principal: 'alice', expiresAt: NOW + 3600 }, NOW)
    store.rawSessions().get(sessionDigest(b.id))!.sealed = store.rawSessions().get(sessionDigest(a.id))!.sealed
    expect(await sessions.get(b.id, NOW + 1)).toBeUndefined()
    expect(await sessions.get(a.id, NOW + 1)).toMatchObject({ bearer: 'bearer-a' })
  })

  it('ends a session at its expiry and removes the row on that read', async () => {
    const store = new MemoryStore()
    const sessions = new ConsoleSessions(store)
    const { id: sid } = await sessions.create({ bearer: BEARER, principal: 'alice', expiresAt: NOW + 60 }, NOW)
    expect(await sessions.get(sid, NOW + 59)).toBeDefined()
    expect(await sessions.get(sid, NOW + 60)).toBeUndefined()
    expect(store.rawSessions().size).toBe(0)
  })

  it('keeps at most `max` sessions: a sign-in beyond it ends the oldest, never itself', async () => {
    const store = new MemoryStore()
    const sessions = new ConsoleSessions(store, { max: 3 })
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await sessions.create({ bearer: `b${i}`, principal: 'alice', expiresAt: NOW + 3600 }, NOW + i)).id)
    const live = await Promise.all(ids.map(async (sid) => (await sessions.get(sid, NOW + 10))?.bearer))
    expect(live).toEqual([undefined, undefined, 'b2', 'b3', 'b4'])
    expect(store.rawSessions().size).toBe(3)
  })
})
