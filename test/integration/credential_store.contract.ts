import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { StoredCredential } from '../../src/credentials/credential_store.ts'
import type { BrokerStore } from '../../src/storage/chained_store.ts'

/**
 * The credential table's semantics, run against every backend (as the audit contract is): a change and
 * its audit record commit together; rotate is a compare-and-swap on the nonce; revoke drops the
 * ciphertext; a re-registration starts afresh.
 */
export function credentialStoreContract(name: string, open: () => Promise<BrokerStore>): void {
  describe(`credential store contract: ${name}`, () => {
    let store: BrokerStore | undefined
    afterEach(async () => { await store?.close(); store = undefined })

    const cred = (over: Partial<StoredCredential> = {}): StoredCredential => ({
      user: 'alice', provider: 'cms', kind: 'iam', iss: 'https://iam.example/', sub: 'a-1', clientId: 'broker',
      scopes: ['compute.read', 'storage.read:/store'], audience: ['https://se.example.org'],
      sealed: { ciphertext: 'Y2lwaGVy', nonce: 'bm9uY2Ux', keyId: '0123456789abcdef' },
      subjectJson: '{"iss":"https://iam.example/","sub":"a-1"}', vaultTokenSha256: 'ab'.repeat(32), createdAt: 1000, revoked: false, ...over,
    })
    const event = (type: AuditEvent['type']): AuditEvent => ({ type, time: 1000, decision: 'allow', detail: { user: 'alice', provider: 'cms' } })
    const types = async (s: BrokerStore) => (await s.query({ limit: 100 })).records.map((r) => r.event.type).reverse()

    it('registers, reads back by name and by Vault token digest, and records the registration', async () => {
      const s = store = await open()
      expect(await s.writeCredential({ action: 'register', credential: cred() }, event('credential.registered'))).toBe(true)
      expect(await s.readCredential('alice', 'cms')).toEqual(cred())
      expect(await s.credentialByVaultToken('ab'.repeat(32))).toEqual(cred())
      expect(await s.credentialByVaultToken('cd'.repeat(32))).toBeUndefined()
      expect(await s.readCredential('alice', 'atlas')).toBeUndefined()
      expect(await types(s)).toEqual(['credential.registered'])
    })

    it('rotates only from the nonce it read (compare-and-swap); a stale rotation changes and records nothing', async () => {
      const s = store = await open()
      await s.writeCredential({ action: 'register', credential: cred() }, event('credential.registered'))
      const next = { ciphertext: 'bmV3', nonce: 'bm9uY2Uy', keyId: '0123456789abcdef' }
      expect(await s.writeCredential({ action: 'rotate', user: 'alice', provider: 'cms', previousNonce: 'bm9uY2Ux', sealed: next, rotatedAt: 1100 }, event('credential.rotated'))).toBe(true)
      expect(await s.readCredential('alice', 'cms')).toMatchObject({ sealed: next, rotatedAt: 1100 })
      expect(await s.writeCredential({ action: 'rotate', user: 'alice', provider: 'cms', previousNonce: 'bm9uY2Ux', sealed: { ...next, nonce: 'x' }, rotatedAt: 1200 }, event('credential.rotated'))).toBe(false)
      expect(await types(s)).toEqual(['credential.registered', 'credential.rotated'])
    })

    it('keeps IAM\'s confirmation on its registration only, newer over older, never on a revoked one, and records nothing', async () => {
      const s = store = await open()
      await s.writeCredential({ action: 'register', credential: cred() }, event('credential.registered'))
      const confirm = (at: number, o: { createdAt?: number; groups?: string[]; sub?: string; now?: number } = {}) => s.confirmCredential({
        user: 'alice', provider: 'cms', createdAt: o.createdAt ?? 1000, iss: 'https://iam.example/', sub: o.sub ?? 'a-1',
        confirmation: { at, groups: o.groups ?? ['/htc/users', '/cms'], claim: 'wlcg.groups' }, now: o.now ?? 4000,
      })
      const stored = async () => (await s.readCredential('alice', 'cms'))!.confirmation
      expect(await confirm(2000)).toBe(true)
      expect(await stored()).toEqual({ at: 2000, groups: ['/htc/users', '/cms'], claim: 'wlcg.groups' })
      // An older one (a slower replica), one for another registration or IAM user, and one for nobody change nothing.
      expect(await confirm(1500, { groups: ['/htc/admins'] })).toBe(false)
      expect(await confirm(3000, { createdAt: 999 })).toBe(false)
      expect(await confirm(3000, { sub: 'a-2' })).toBe(false)
      expect(await s.confirmCredential({ user: 'bob', provider: 'cms', createdAt: 1000, iss: 'https://iam.example/', sub: 'a-1', confirmation: { at: 3000, groups: [], claim: null }, now: 3000 })).toBe(false)
      expect(await stored()).toEqual({ at: 2000, groups: ['/htc/users', '/cms'], claim: 'wlcg.groups' })
      // Two answers of one second: only the groups both state stay (a dropped group cannot come back by a race).
      expect(await confirm(2000, { groups: ['/cms', '/atlas'] })).toBe(true)
      expect(await stored()).toEqual({ at: 2000, groups: ['/cms'], claim: 'wlcg.groups' })
      expect(await confirm(2000, { groups: ['/cms'] })).toBe(false)
      expect(await confirm(3000, { groups: [] })).toBe(true)
      expect(await stored()).toEqual({ at: 3000, groups: [], claim: 'wlcg.groups' })
      // One dated far in the writer's future (a replica's clock ahead) gives way to the present.
      expect(await confirm(90_000, { now: 90_000 })).toBe(true)
      expect(await confirm(4000, { now: 4000 })).toBe(true)
      expect((await stored())!.at).toBe(4000)
      expect(await types(s)).toEqual(['credential.registered'])
      // A re-registration starts without one; a revoked credential takes none.
      await s.writeCredential({ action: 'register', credential: cred({ createdAt: 5000 }) }, event('credential.registered'))
      expect(await s.readCredential('alice', 'cms')).toEqual(cred({ createdAt: 5000 }))
      await s.writeCredential({ action: 'revoke', user: 'alice', provider: 'cms', revokedAt: 5100, revokedBy: 'admin' }, event('credential.revoked'))
      expect(await confirm(6000, { createdAt: 5000 })).toBe(false)
      expect(await stored()).toBeUndefined()
    })

    it('revokes once, dropping the ciphertext; a revoked credential cannot rotate; re-registration starts afresh', async () => {
      const s = store = await open()
      await s.writeCredential({ action: 'register', credential: cred() }, event('credential.registered'))
      expect(await s.writeCredential({ action: 'revoke', user: 'alice', provider: 'cms', revokedAt: 1200, revokedBy: 'admin' }, event('credential.revoked'))).toBe(true)
      const revoked = await s.readCredential('alice', 'cms')
      expect(revoked).toMatchObject({ revoked: true, revokedAt: 1200, revokedBy: 'admin' })
      expect(revoked!.sealed).toBeUndefined()
      expect(await s.writeCredential({ action: 'revoke', user: 'alice', provider: 'cms', revokedAt: 1300, revokedBy: 'admin' }, event('credential.revoked'))).toBe(false)
      expect(await s.writeCredential({ action: 'rotate', user: 'alice', provider: 'cms', previousNonce: 'bm9uY2Ux', sealed: cred().sealed!, rotatedAt: 1300 }, event('credential.rotated'))).toBe(false)
      expect(await s.writeCredential({ action: 'revoke', user: 'bob', provider: 'cms', revokedAt: 1300, revokedBy: 'admin' }, event('credential.revoked'))).toBe(false)
      await s.writeCredential({ action: 'register', credential: cred({ createdAt: 1400 }) }, event('credential.registered'))
      expect(await s.readCredential('alice', 'cms')).toEqual(cred({ createdAt: 1400 }))
      expect(await types(s)).toEqual(['credential.registered', 'credential.revoked', 'credential.registered'])
      expect((await s.listCredentials()).map((c) => `${c.user}/${c.provider}`)).toEqual(['alice/cms'])
      expect((await s.verify()).ok).toBe(true)
    })

    it('revokes with ifNonce only while the row still holds that sealed token, recording nothing otherwise', async () => {
      const s = store = await open()
      await s.writeCredential({ action: 'register', credential: cred() }, event('credential.registered'))
      // Registered afresh since the token was read: IAM's refusal of the old token does not end the new one.
      await s.writeCredential({ action: 'register', credential: cred({ createdAt: 1100, sealed: { ciphertext: 'bmV3', nonce: 'bm9uY2Uy', keyId: '0123456789abcdef' } }) }, event('credential.registered'))
      expect(await s.writeCredential({ action: 'revoke', user: 'alice', provider: 'cms', revokedAt: 1200, revokedBy: 'iam', ifNonce: 'bm9uY2Ux' }, event('credential.revoked'))).toBe(false)
      expect(await s.readCredential('alice', 'cms')).toMatchObject({ revoked: false, sealed: { nonce: 'bm9uY2Uy' } })
      expect(await s.writeCredential({ action: 'revoke', user: 'alice', provider: 'cms', revokedAt: 1300, revokedBy: 'iam', ifNonce: 'bm9uY2Uy' }, event('credential.revoked'))).toBe(true)
      expect(await s.readCredential('alice', 'cms')).toMatchObject({ revoked: true, revokedAt: 1300, revokedBy: 'iam' })
      expect(await types(s)).toEqual(['credential.registered', 'credential.registered', 'credential.revoked'])
    })

    it('counts a user\'s unrevoked credentials, apart from the one named and from other users\'', async () => {
      const s = store = await open()
      for (const provider of ['cms', 'cms_a', 'cms_b']) await s.writeCredential({ action: 'register', credential: cred({ provider, vaultTokenSha256: provider.padEnd(64, '0') }) }, event('credential.registered'))
      await s.writeCredential({ action: 'register', credential: cred({ user: 'bob', vaultTokenSha256: 'cd'.repeat(32) }) }, event('credential.registered'))
      expect(await s.countLiveCredentials('alice', 'cms_c')).toBe(3)
      expect(await s.countLiveCredentials('alice', 'cms_a')).toBe(2)
      await s.writeCredential({ action: 'revoke', user: 'alice', provider: 'cms_b', revokedAt: 1100, revokedBy: 'admin:x' }, event('credential.revoked'))
      expect(await s.countLiveCredentials('alice', 'cms_c')).toBe(2)
      expect(await s.countLiveCredentials('carol', 'cms')).toBe(0)
    })

    it('registers with replacing only while the row is the one read: no row or no token (null), or that nonce', async () => {
      const s = store = await open()
      const sealed = (nonce: string) => ({ sealed: { ciphertext: 'Y2lwaGVy', nonce, keyId: '0123456789abcdef' } })
      // Two registrations that both read "no row": the first creates it, the second finds it taken.
      expect(await s.writeCredential({ action: 'register', credential: cred(sealed('bm9uY2Ux')), replacing: null }, event('credential.registered'))).toBe(true)
      expect(await s.writeCredential({ action: 'register', credential: cred({ createdAt: 1001, ...sealed('bm9uY2Uy') }), replacing: null }, event('credential.registered'))).toBe(false)
      expect(await s.readCredential('alice', 'cms')).toMatchObject({ createdAt: 1000, sealed: { nonce: 'bm9uY2Ux' } })
      // Two that both read nonce 1: one replaces it, the other no longer finds it.
      expect(await s.writeCredential({ action: 'register', credential: cred({ createdAt: 1002, ...sealed('bm9uY2Uz') }), replacing: 'bm9uY2Ux' }, event('credential.registered'))).toBe(true)
      expect(await s.writeCredential({ action: 'register', credential: cred({ createdAt: 1003, ...sealed('bm9uY2U0') }), replacing: 'bm9uY2Ux' }, event('credential.registered'))).toBe(false)
      // A revoked row holds no token: null replaces it (and lifts the revocation) once.
      await s.writeCredential({ action: 'revoke', user: 'alice', provider: 'cms', revokedAt: 1004, revokedBy: 'admin:x' }, event('credential.revoked'))
      expect(await s.writeCredential({ action: 'register', credential: cred({ createdAt: 1005, ...sealed('bm9uY2U1') }), replacing: 'bm9uY2Uz' }, event('credential.registered'))).toBe(false)
      expect(await s.writeCredential({ action: 'register', credential: cred({ createdAt: 1006, ...sealed('bm9uY2U2') }), replacing: null }, event('credential.registered'))).toBe(true)
      expect(await s.readCredential('alice', 'cms')).toMatchObject({ createdAt: 1006, revoked: false, sealed: { nonce: 'bm9uY2U2' } })
      expect(await types(s)).toEqual(['credential.registered', 'credential.registered', 'credential.revoked', 'credential.registered'])
    })
  })
}
