import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import type { CredentialWrite } from '../../src/credentials/credential_store.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * IAM retires a refresh token as it rotates it (the msw IAM's default). A rotated token the store refuses
 * during an outage is held in memory and written again later; a broker restarted before that write lands
 * must take it up again, or its next refresh presents the retired token, IAM refuses it, and the
 * credential is revoked: the user would have to register again because of an outage and a restart.
 */
const t = await useCredentialsApp()

function spillDir(): string {
  return join(t.config.data_dir, 'credentials', 'held')
}

function spilled(): string[] {
  try { return readdirSync(spillDir()).filter((n) => !n.startsWith('.')) } catch { return [] }
}

it('is kept on disk while the store refuses it, and a restarted broker stores and uses it', async () => {
  t.iam.rotateRefreshTokens = true
  const res = await t.register(await t.userToken({ preferred_username: 'rosa', sub: 'rosa-sub' }), { provider: 'cms' })
  expect(res.status).toBe(201)
  const before = (await t.store.readCredential('rosa', 'cms'))!.sealed!.nonce

  // The store refuses every rotation (an outage); the job token's own record still commits.
  const write = t.store.writeCredential.bind(t.store)
  t.store.writeCredential = async (w: CredentialWrite, e) => {
    if (w.action === 'rotate') throw new Error('SQLITE_BUSY: database is locked')
    return write(w, e)
  }
  try {
    expect((await t.jobToken('rosa', 'cms', t.creddToken())).status).toBe(200)
    // Shutdown: one last write, refused too; the token stays on disk, sealed, owner-only.
    await t.credentials.close()
  } finally {
    t.store.writeCredential = write
  }
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

  // The broker restarts on the same data directory and database, the store healthy again.
  const restarted = t.withCredentialKey(t.credentialKeyHex)
  let stored = false
  for (let i = 0; i < 100 && !stored; i++) {
    stored = (await t.store.readCredential('rosa', 'cms'))!.sealed!.nonce !== before
    if (!stored) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  expect(stored).toBe(true)
  expect(spilled()).toEqual([])
  const rotated = (await t.store.query({ limit: 50, type: 'credential.rotated' })).records.map((r) => r.event)
  expect(rotated.filter((e) => (e.detail as { user?: string }).user === 'rosa')).toHaveLength(1)

  // Its next refresh presents the token IAM expects: the credential lives on.
  const refreshes = t.iamRequests('refresh_token').length
  const next = await restarted.request('/v1/credentials/rosa/cms/token?minimum_seconds=999999', { headers: { authorization: `Bearer ${t.creddToken()}` } })
  expect(next.status).toBe(200)
  expect(t.iamRequests('refresh_token')).toHaveLength(refreshes + 1)
  expect(await t.store.readCredential('rosa', 'cms')).toMatchObject({ revoked: false })
})

it('is dropped, file and all, when the credential was registered afresh before it was stored (a restart in between)', async () => {
  t.iam.rotateRefreshTokens = true
  const broker = t.withCredentialKey(t.credentialKeyHex)
  const token = async () => t.userToken({ preferred_username: 'sam', sub: 'sam-sub' })
  expect((await t.register(await token(), { provider: 'cms' })).status).toBe(201)
  const write = t.store.writeCredential.bind(t.store)
  t.store.writeCredential = async (w: CredentialWrite, e) => {
    if (w.action === 'rotate') throw new Error('SQLITE_BUSY: database is locked')
    return write(w, e)
  }
  try {
    const res = await broker.request('/v1/credentials/sam/cms/token', { headers: { authorization: `Bearer ${t.creddToken()}` } })
    expect(res.status).toBe(200)
  } finally {
    t.store.writeCredential = write
  }
  expect(spilled()).toHaveLength(1)
  // The user registers again before any broker stored the rotation: the new registration's token wins.
  expect((await t.register(await token(), { provider: 'cms' })).status).toBe(201)
  const registered = (await t.store.readCredential('sam', 'cms'))!.sealed!.nonce

  const restarted = t.withCredentialKey(t.credentialKeyHex)
  for (let i = 0; i < 100 && spilled().length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  expect(spilled()).toEqual([])
  expect((await t.store.readCredential('sam', 'cms'))!.sealed!.nonce).toBe(registered)
  const next = await restarted.request('/v1/credentials/sam/cms/token?minimum_seconds=999999', { headers: { authorization: `Bearer ${t.creddToken()}` } })
  expect(next.status).toBe(200)
  expect(await t.store.readCredential('sam', 'cms')).toMatchObject({ revoked: false })
})
