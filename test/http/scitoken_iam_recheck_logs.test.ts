import { DatabaseSync } from 'node:sqlite'
import { expect, it } from 'vitest'
import { createLogger } from '../../src/lib/logger.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * What a scitoken credential's IAM rechecks write down (docs/job-credentials.md, "IAM rechecks"): every
 * outcome (confirmed, IAM failing within and beyond the grace, a group dropped, the user suspended, an
 * admin revocation) leaves log lines and audit records, and none of them holds a token: neither the
 * user's, nor IAM's refresh or access tokens, nor the SciTokens handed out.
 */
const HOUR = 3600
const clock = { t: Math.floor(Date.now() / 1000), now() { return this.t } }
const lines: string[] = []
const t = await useCredentialsApp({ clock, log: createLogger((line) => { lines.push(line) }) })

/** A JWT (header `{"` base64url-encoded, then a dot): what every IAM access token and SciToken here is. */
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/

it('logs and records the recheck outcomes without any token in them', async () => {
  const secrets = new Set<string>()
  const keep = (...xs: string[]) => { for (const x of xs) secrets.add(x) }
  const handedOut = async (res: Response) => {
    expect(res.status, await res.clone().text()).toBe(200)
    keep((await res.json() as { access_token: string }).access_token)
  }
  const userToken = await t.userToken({ preferred_username: 'lena', sub: 'lena-sub' })
  keep(userToken)
  const start = clock.t
  expect((await t.register(userToken, { provider: 'se-storage' })).status).toBe(201)
  keep(...t.iam.liveRefreshTokens)
  const fresh = '?minimum_seconds=999999'

  clock.t = start + HOUR // confirmed, refresh token rotated
  await handedOut(await t.jobToken('lena', 'se-storage', t.creddToken(), fresh))
  keep(...t.iam.liveRefreshTokens)
  t.iam.faults.token = 'http500'
  clock.t = start + 2 * HOUR + 10 // within the grace: minted, IAM's failure logged
  await handedOut(await t.jobToken('lena', 'se-storage', t.creddToken(), fresh))
  t.iam.faults.token = 'down'
  clock.t = start + 3 * HOUR // beyond the grace
  expect((await t.jobToken('lena', 'se-storage', t.creddToken(), fresh)).status).toBe(503)
  t.iam.faults.token = 'ok'
  t.iam.userGroups.set('lena-sub', ['/cms'])
  clock.t += 10 // group dropped: token.denied
  expect((await t.jobToken('lena', 'se-storage', t.creddToken(), fresh)).status).toBe(403)
  keep(...t.iam.liveRefreshTokens)
  t.iam.userGroups.delete('lena-sub')
  t.iam.suspended.add('lena-sub')
  clock.t += HOUR // suspended: IAM refuses the refresh token, the credential is revoked
  expect((await t.jobToken('lena', 'se-storage', t.creddToken(), fresh)).status).toBe(403)
  t.iam.suspended.delete('lena-sub')

  // Someone else, revoked by an admin: the refresh token is opened once more, to be revoked at IAM.
  const other = await t.userToken({ preferred_username: 'mads', sub: 'mads-sub' })
  keep(other)
  expect((await t.register(other, { provider: 'se-storage' })).status).toBe(201)
  keep(...t.iam.liveRefreshTokens)
  expect((await t.app.request('/v1/credentials/mads/se-storage', { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })).status).toBe(200)

  const db = new DatabaseSync(t.dbFile, { readOnly: true })
  let records: string
  let rows: string
  try {
    records = (db.prepare('SELECT body FROM audit_log').all() as { body: string }[]).map((r) => r.body).join('\n')
    rows = JSON.stringify(db.prepare('SELECT * FROM user_credentials').all())
  } finally {
    db.close()
  }
  // The outcomes are on record and in the log: the checks below look at real material.
  for (const type of ['credential.registered', 'credential.rotated', 'token.issued', 'token.denied', 'credential.revoked']) expect(records).toContain(type)
  expect(records).toContain('"outcome":"iam-unavailable"')
  expect(lines.some((l) => l.includes('within its grace'))).toBe(true)
  expect(lines.some((l) => l.includes('IAM unavailable'))).toBe(true)

  expect(secrets.size).toBeGreaterThan(6)
  const everything = [records, rows, ...lines]
  for (const s of secrets) for (const text of everything) expect(text.includes(s), `a token in: ${text.slice(0, 200)}`).toBe(false)
  for (const text of [records, ...lines]) expect(text).not.toMatch(JWT)
})
