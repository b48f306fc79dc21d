import { beforeEach, describe, expect, it } from 'vitest'
import type { CredentialWrite } from '../../src/credentials/credential_store.ts'
import { StoreOverloaded } from '../../src/storage/group_commit.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * IAM rotates refresh tokens and retires the old one at once (the msw IAM's default). When the store
 * cannot take the rotated token for a moment, the broker must keep it and write it later, not drop it:
 * a dropped one makes IAM refuse the next refresh and costs the user their credential. The store fails
 * at its own boundary (its write method), the way a full group-commit queue refuses a write.
 */
const t = await useCredentialsApp()

beforeEach(() => {
  t.iam.tokenRequests = []
  t.iam.rotateRefreshTokens = true
})

async function registered(user: string): Promise<void> {
  const res = await t.register(await t.userToken({ preferred_username: user, sub: `${user}-sub` }), { provider: 'cms' })
  expect(res.status).toBe(201)
}

/** The store refuses the next `n` rotation writes (StoreOverloaded, as a full queue does); everything else goes through. */
function failRotations(n: number, error: () => Error = () => new StoreOverloaded(50_000)): { restore: () => void; refused: () => number } {
  const write = t.store.writeCredential.bind(t.store)
  let refused = 0
  t.store.writeCredential = async (w: CredentialWrite, e) => {
    if (w.action === 'rotate' && refused < n) {
      refused++
      throw error()
    }
    return write(w, e)
  }
  return { restore: () => { t.store.writeCredential = write }, refused: () => refused }
}

/** Polls (bounded) until the stored row holds a ciphertext other than `before`. */
async function rowChanged(user: string, before: string | undefined): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const c = await t.store.readCredential(user, 'cms')
    if (c?.sealed?.nonce !== before) return true
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return false
}

describe('a rotated refresh token the store could not take', () => {
  it('is used for the next refresh instead of the retired one: the credential survives', async () => {
    await registered('ursula')
    const f = failRotations(1)
    try {
      const first = await t.jobToken('ursula', 'cms', t.creddToken())
      expect(f.refused()).toBe(1)
      const again = await t.jobToken('ursula', 'cms', t.creddToken(), '?minimum_seconds=999999')
      // The first access token's own record was written, so it may leave (storing the rotation is a
      // separate matter); the second refresh is made with the rotated token IAM expects.
      expect([first.status, again.status]).toEqual([200, 200])
    } finally {
      f.restore()
    }
    expect(t.iamRequests('refresh_token')).toHaveLength(2)
    expect(await t.store.readCredential('ursula', 'cms')).toMatchObject({ revoked: false })
  })

  it('is written to the store once it takes writes again, so another replica (or a restart) can use it', async () => {
    await registered('victor')
    const before = (await t.store.readCredential('victor', 'cms'))?.sealed?.nonce
    const f = failRotations(2, () => new Error('SQLITE_BUSY: database is locked'))
    try {
      expect((await t.jobToken('victor', 'cms', t.creddToken())).status).toBe(200)
      // Retried with back-off in the background, no request needed.
      expect(await rowChanged('victor', before)).toBe(true)
    } finally {
      f.restore()
    }
    expect(f.refused()).toBe(2)
    const rotated = (await t.store.query({ limit: 50, type: 'credential.rotated' })).records.map((r) => r.event)
    expect(rotated.filter((e) => (e.detail as { user?: string }).user === 'victor')).toHaveLength(1)
    // A broker on the same database that never saw the token in memory refreshes with what was written.
    const replica = t.withCredentialKey(t.credentialKeyHex)
    const res = await replica.request('/v1/credentials/victor/cms/token', { headers: { authorization: `Bearer ${t.creddToken()}` } })
    expect(res.status).toBe(200)
    expect(await t.store.readCredential('victor', 'cms')).toMatchObject({ revoked: false })
  })

  it('is taken as stored when a write the store reported failed had committed (one record, no revocation)', async () => {
    await registered('xaver')
    const before = (await t.store.readCredential('xaver', 'cms'))?.sealed?.nonce
    const write = t.store.writeCredential.bind(t.store)
    let lost = 0
    t.store.writeCredential = async (w: CredentialWrite, e) => {
      const ok = await write(w, e)
      if (w.action === 'rotate' && lost++ === 0) throw new Error('connection reset after commit')
      return ok
    }
    try {
      expect((await t.jobToken('xaver', 'cms', t.creddToken())).status).toBe(200)
      // The retry finds its own token in the row and stops; nothing else is written.
      await new Promise((resolve) => setTimeout(resolve, 400))
    } finally {
      t.store.writeCredential = write
    }
    expect((await t.store.readCredential('xaver', 'cms'))?.sealed?.nonce).not.toBe(before)
    const rotated = (await t.store.query({ limit: 50, type: 'credential.rotated' })).records.map((r) => r.event)
    expect(rotated.filter((e) => (e.detail as { user?: string }).user === 'xaver')).toHaveLength(1)
    expect((await t.jobToken('xaver', 'cms', t.creddToken(), '?minimum_seconds=999999')).status).toBe(200)
    expect(await t.store.readCredential('xaver', 'cms')).toMatchObject({ revoked: false })
  })

  it('revokes the credential when IAM refuses the held token itself (the user suspended there)', async () => {
    await registered('yusuf')
    const f = failRotations(1000)
    try {
      expect((await t.jobToken('yusuf', 'cms', t.creddToken())).status).toBe(200)
      t.iam.suspended.add('yusuf-sub')
      const res = await t.jobToken('yusuf', 'cms', t.creddToken(), '?minimum_seconds=999999')
      expect(res.status).toBe(403)
    } finally {
      f.restore()
      t.iam.suspended.delete('yusuf-sub')
    }
    expect(await t.store.readCredential('yusuf', 'cms')).toMatchObject({ revoked: true, revokedBy: 'iam' })
  })

  it('is dropped, not written, once the credential is revoked meanwhile', async () => {
    await registered('wanda')
    const f = failRotations(1000)
    try {
      expect((await t.jobToken('wanda', 'cms', t.creddToken())).status).toBe(200)
      const del = await t.app.request('/v1/credentials/wanda/cms', { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })
      expect(del.status).toBe(200)
    } finally {
      f.restore()
    }
    const refreshes = t.iamRequests('refresh_token').length
    const res = await t.jobToken('wanda', 'cms', t.creddToken(), '?minimum_seconds=999999')
    expect(res.status).toBe(403)
    // Nothing was refreshed with the held token: a revoked credential gets nothing.
    expect(t.iamRequests('refresh_token')).toHaveLength(refreshes)
    await new Promise((resolve) => setTimeout(resolve, 400))
    expect(await t.store.readCredential('wanda', 'cms')).toMatchObject({ revoked: true })
    expect((await t.store.readCredential('wanda', 'cms'))?.sealed).toBeUndefined()
  })

  // Last: closing stops this broker's retries for the rest of the file.
  it('is written once more when the credential services close (shutdown), before the store does', async () => {
    await registered('zoe')
    const before = (await t.store.readCredential('zoe', 'cms'))?.sealed?.nonce
    const f = failRotations(1)
    try {
      expect((await t.jobToken('zoe', 'cms', t.creddToken())).status).toBe(200)
      expect(f.refused()).toBe(1)
      await t.credentials.close()
    } finally {
      f.restore()
    }
    // No polling: the write happened within close().
    expect((await t.store.readCredential('zoe', 'cms'))?.sealed?.nonce).not.toBe(before)
  })
})
