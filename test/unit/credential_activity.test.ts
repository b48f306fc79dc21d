import { describe, expect, it } from 'vitest'
import { ACTIVITY_SCAN_LIMIT, credentialActivity } from '../../src/credentials/credential_activity.ts'
import type { StoredCredential } from '../../src/credentials/credential_store.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const T = 1_800_000_000
const cred = (o: Partial<StoredCredential> = {}): StoredCredential => ({
  user: 'alice', provider: 'cms', kind: 'iam', iss: 'https://iam.example.org/', sub: 'alice-sub', scopes: ['compute.read'], audience: [],
  subjectJson: '{}', createdAt: T, revoked: false, ...o,
})
const jobToken = (time: number, credential: { user: string; provider: string } | undefined, o: { issuedSub?: string; caller?: string } = {}) => ({
  type: 'token.issued' as const, time, decision: 'allow' as const, issuedSub: o.issuedSub ?? 'alice-sub',
  ...(o.caller ? { caller: { sub: o.caller } } : {}), ...(credential ? { detail: { credential } } : {}),
})

describe('credentialActivity', () => {
  it('finds the newest job token of the credential since its registration, not another provider\'s or an older registration\'s', async () => {
    const store = new MemoryStore()
    await store.record(jobToken(T - 10, { user: 'alice', provider: 'cms' }))
    await store.record(jobToken(T + 10, { user: 'alice', provider: 'cms' }))
    await store.record(jobToken(T + 20, { user: 'alice', provider: 'other' }))
    await store.record(jobToken(T + 30, undefined))
    const [a] = await credentialActivity([cred()], store)
    expect(a!.lastToken).toEqual({ state: 'found', time: T + 10, seq: 2 })
    const [b] = await credentialActivity([cred({ createdAt: T + 11 })], store)
    expect(b!.lastToken).toEqual({ state: 'none' })
  })

  it('looks minted (scitoken) job tokens up by their registrant as caller', async () => {
    const store = new MemoryStore()
    await store.record(jobToken(T + 5, { user: 'alice', provider: 'storage' }, { issuedSub: 'alice@pool.example.org', caller: 'alice-sub' }))
    const [a] = await credentialActivity([cred({ kind: 'scitoken', provider: 'storage' })], store)
    expect(a!.lastToken).toEqual({ state: 'found', time: T + 5, seq: 1 })
  })

  it('gives up after the newest ACTIVITY_SCAN_LIMIT candidates and says so', async () => {
    const store = new MemoryStore()
    await store.record(jobToken(T + 1, { user: 'alice', provider: 'cms' }))
    for (let i = 0; i < ACTIVITY_SCAN_LIMIT; i++) await store.record(jobToken(T + 2, { user: 'alice', provider: 'other' }))
    const [a] = await credentialActivity([cred()], store)
    expect(a!.lastToken).toEqual({ state: 'beyond' })
  })
})
