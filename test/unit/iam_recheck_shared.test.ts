import { describe, expect, it } from 'vitest'
import type { CredentialConfirmation, StoredConfirmation, StoredCredential } from '../../src/credentials/credential_store.ts'
import { fromCredentialRow, type CredentialRow } from '../../src/credentials/credential_store.ts'
import { IamRecheck } from '../../src/credentials/iam_recheck.ts'
import { AccessDenied, AuditStoreUnavailable, TemporarilyUnavailable } from '../../src/errors.ts'
import type { ExchangedAccessToken } from '../../src/iam/outbound_exchange.ts'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import { createLogger } from '../../src/lib/logger.ts'

// IAM confirmations shared through the credential row (docs/job-credentials.md, "Where confirmations
// live"): what one process may take from another's, and what it must not. IAM and the store are stand-ins
// at the recheck's own boundary (the exchanger, the verifier, the store's confirm write).

const HOUR = 3600
const T0 = 1_800_000_000
const ISS = 'https://iam.example/'

function subject(groups: string[]): VerifiedSubject {
  return { iss: ISS, sub: 'u-1', groups, scopes: [], exp: T0 + 10 * HOUR, claims: { iss: ISS, sub: 'u-1', 'wlcg.groups': groups } }
}

function credential(confirmation?: StoredConfirmation): StoredCredential {
  return {
    user: 'ursa', provider: 'se', kind: 'scitoken', iss: ISS, sub: 'u-1', clientId: 'broker', scopes: ['storage.read:/'], audience: [],
    sealed: { ciphertext: 'Y2lwaGVy', nonce: 'bm9uY2U=', keyId: '0123456789abcdef' }, subjectJson: JSON.stringify(subject(['/htc/users'])),
    createdAt: T0, revoked: false, ...(confirmation ? { confirmation } : {}),
  }
}

function world(o: { answer?: () => VerifiedSubject | Error; refreshSeconds?: number; refreshFails?: () => Error } = {}) {
  const clock = { t: T0, now() { return this.t } }
  const writes: CredentialConfirmation[] = []
  const lines: string[] = []
  let asked = 0
  const recheck = new IamRecheck({
    exchanger: {
      async refresh() {
        asked++
        const failure = o.refreshFails?.()
        if (failure) throw failure
        // IAM (and the verification after it) take a while.
        clock.t += o.refreshSeconds ?? 0
        return { accessToken: 'at' } as ExchangedAccessToken
      },
    },
    store: { async confirmCredential(c) { writes.push(c); return true } },
    verifier: {
      async verify() {
        const a = o.answer?.() ?? subject(['/htc/users'])
        if (a instanceof Error) throw a
        return a
      },
    },
    issuerAudience: () => undefined, clock, log: createLogger((l) => lines.push(l)), intervalSeconds: HOUR, graceSeconds: HOUR,
  })
  return { recheck, clock, writes, lines, asked: () => asked }
}

describe('IAM confirmations shared through the credential row', () => {
  it('dates a confirmation when IAM was asked, not when its slow answer was verified', async () => {
    const w = world({ refreshSeconds: 7 })
    w.clock.t = T0 + HOUR
    const c = await w.recheck.confirm(credential())
    expect(c).toMatchObject({ outcome: 'confirmed', confirmedAt: T0 + HOUR })
    expect(w.writes.map((x) => x.confirmation.at)).toEqual([T0 + HOUR])
    expect(w.writes[0]).toMatchObject({ iss: ISS, sub: 'u-1', createdAt: T0, now: T0 + HOUR + 7 })
  })

  it('decides on a later confirmation another process stored, asking IAM nothing', async () => {
    const w = world()
    w.clock.t = T0 + HOUR + 600
    const c = await w.recheck.confirm(credential({ at: T0 + HOUR, groups: ['/cms'], claim: 'wlcg.groups' }))
    expect(c).toMatchObject({ outcome: 'not-due', confirmedAt: T0 + HOUR, subject: { groups: ['/cms'], claims: { 'wlcg.groups': ['/cms'] } } })
    expect(w.asked()).toBe(0)
  })

  it('does not trust a stored confirmation dated in its future: it asks IAM, and says why', async () => {
    const w = world()
    w.clock.t = T0 + HOUR
    const c = await w.recheck.confirm(credential({ at: T0 + 25 * HOUR, groups: ['/htc/users'], claim: 'wlcg.groups' }))
    expect(c).toMatchObject({ outcome: 'confirmed', confirmedAt: T0 + HOUR })
    expect(w.asked()).toBe(1)
    expect(w.lines.join('\n')).toContain('ignoring a stored IAM confirmation dated in the future')
  })

  it('after IAM answered without confirming, takes no confirmation asked for before that answer, whoever stored it', async () => {
    let answer: VerifiedSubject | Error = new AccessDenied('IAM refused the group scope')
    const w = world({ answer: () => answer })
    w.clock.t = T0 + HOUR
    await expect(w.recheck.confirm(credential())).rejects.toThrow('IAM refused the group scope')
    // Another replica's confirmation, asked a second before this one's answer, stored after it.
    const older = credential({ at: T0 + HOUR - 1, groups: ['/htc/users'], claim: 'wlcg.groups' })
    w.clock.t += 5
    answer = subject(['/htc/users'])
    const c = await w.recheck.confirm(older)
    expect(c).toMatchObject({ outcome: 'confirmed', confirmedAt: T0 + HOUR + 5 })
    expect(w.asked()).toBe(2)
    // One asked for after the refusal serves as any other.
    const later = credential({ at: T0 + HOUR + 10, groups: ['/htc/users'], claim: 'wlcg.groups' })
    w.clock.t += 20
    expect(await w.recheck.confirm(later)).toMatchObject({ outcome: 'not-due', confirmedAt: T0 + HOUR + 10 })
    expect(w.asked()).toBe(2)
  })

  it('does not go back to an older confirmation when IAM, having just answered without confirming, is down', async () => {
    let answer: VerifiedSubject | Error = new AccessDenied('IAM refused the group scope')
    const w = world({ answer: () => answer })
    const confirmed = credential({ at: T0 + HOUR, groups: ['/htc/users'], claim: 'wlcg.groups' })
    w.clock.t = T0 + 2 * HOUR
    await expect(w.recheck.confirm(confirmed)).rejects.toThrow('IAM refused the group scope')
    answer = new TemporarilyUnavailable('IAM is down', { retryAfter: 30 })
    w.clock.t += 10
    // Within interval + grace of the older confirmation, which an outage alone would let serve.
    await expect(w.recheck.confirm(confirmed)).rejects.toThrow(AccessDenied)
    // While waiting to ask IAM again, too.
    w.clock.t += 5
    await expect(w.recheck.confirm(confirmed)).rejects.toThrow('IAM did not confirm this user when last asked')
    // IAM back and confirming: served again.
    answer = subject(['/htc/users'])
    w.clock.t += 60
    expect(await w.recheck.confirm(confirmed)).toMatchObject({ outcome: 'confirmed' })
  })

  it('reads a row whose confirmation is not one as unconfirmed, instead of failing the read', () => {
    const row: CredentialRow = {
      user_name: 'ursa', provider: 'se', kind: 'scitoken', iss: ISS, sub: 'u-1', client_id: 'broker', scopes: 's', audience: '', ciphertext: null, nonce: null, key_id: null,
      subject_json: '{}', vault_token_sha256: null, created_at: T0, rotated_at: null, revoked: 0, revoked_at: null, revoked_by: null, confirmed_at: T0 + 1, confirmed_groups: '',
    }
    for (const bad of ['{"groups":', '{"groups":"/cms","claim":null}', '{"groups":[1],"claim":null}', '{"groups":[],"claim":"roles"}', 'null']) {
      expect(fromCredentialRow({ ...row, confirmed_groups: bad }).confirmation, bad).toBeUndefined()
    }
    expect(fromCredentialRow({ ...row, confirmed_groups: '{"groups":["/cms"],"claim":"groups"}' }).confirmation).toEqual({ at: T0 + 1, groups: ['/cms'], claim: 'groups' })
  })

  it('answers the broker\'s own store outage during the refresh as that outage, not as IAM unreachable', async () => {
    // The exchanger keeps a rotated refresh token in the broker's store; that write failing says nothing
    // about IAM, so the last confirmation must not be served as if IAM had been out of reach.
    const w = world({ refreshFails: () => new AuditStoreUnavailable(Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 })) })
    w.clock.t = T0 + HOUR + 60
    await expect(w.recheck.confirm(credential())).rejects.toBeInstanceOf(AuditStoreUnavailable)
    expect(w.lines.join('\n')).not.toMatch(/IAM has not confirmed|unconfirmed/i)
  })
})
