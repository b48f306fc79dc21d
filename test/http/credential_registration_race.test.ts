import { beforeEach, describe, expect, it } from 'vitest'
import type { CredentialWrite } from '../../src/credentials/credential_store.ts'
import { useCredentialsApp, SE } from '../support/credentials_app.ts'

/**
 * Two registrations of one credential (same user, provider, handle) at the same instant. Each obtained a
 * refresh token at IAM; only one row can hold one. Expected: the refresh tokens live at IAM afterwards are
 * exactly the one the row holds (RFC 7009 revocation of every other, as for a sequential re-registration,
 * docs/job-credentials.md), and the stored credential still serves job tokens.
 */
const t = await useCredentialsApp()

beforeEach(() => {
  t.iam.tokenRequests = []
  t.iam.rotateRefreshTokens = true
})

/** Holds every registration write for `user` until `count` have arrived: all passed the read of the row first. */
async function racing(user: string, count: number, requests: Array<() => Promise<Response>>): Promise<Response[]> {
  const write = t.store.writeCredential.bind(t.store)
  let arrived = 0
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  t.store.writeCredential = async (w: CredentialWrite, e) => {
    if (w.action === 'register' && w.credential.user === user) {
      if (++arrived === count) release()
      await gate
    }
    return write(w, e)
  }
  try {
    return await Promise.all(requests.map((r) => r()))
  } finally {
    t.store.writeCredential = write
  }
}

async function liveAtIamAfter(run: () => Promise<Response[]>): Promise<{ answers: Response[]; added: string[]; removed: string[] }> {
  const before = new Set(t.iam.liveRefreshTokens)
  const answers = await run()
  const after = t.iam.liveRefreshTokens
  return { answers, added: after.filter((x) => !before.has(x)), removed: [...before].filter((x) => !after.includes(x)) }
}

describe('two registrations of the same credential at the same instant', () => {
  it('leaves only the stored refresh token live at IAM, and the credential serves job tokens', async () => {
    const token = await t.userToken({ preferred_username: 'rita', sub: 'rita-sub' })
    const { answers, added } = await liveAtIamAfter(() => racing('rita', 2, [
      () => t.register(token, { provider: 'cms', handle: 'h1' }),
      () => t.register(token, { provider: 'cms', handle: 'h1' }),
    ]))
    // Both submits asked for the same credential, and it is registered: neither condor_submit fails.
    expect(answers.map((a) => a.status)).toEqual([201, 201])
    expect(t.iamRequests('urn:ietf:params:oauth:grant-type:token-exchange')).toHaveLength(2)
    expect(added).toHaveLength(1)
    const job = await t.jobToken('rita', 'cms_h1', t.creddToken())
    expect(job.status).toBe(200)
    // The job token came from the one refresh token left; IAM rotated it into the one now live.
    const used = t.iamRequests('refresh_token').map((r) => r.get('refresh_token'))
    expect(used).toEqual([added[0]])
    // One row change, one record.
    const recorded = (await t.store.query({ limit: 20, type: 'credential.registered' })).records
      .filter((r) => (r.event.detail as { user?: string }).user === 'rita')
    expect(recorded).toHaveLength(1)
  })

  it('revokes the replaced registration once and the losing one, when both replace an earlier registration', async () => {
    const token = await t.userToken({ preferred_username: 'rudi', sub: 'rudi-sub' })
    expect((await t.register(token, { provider: 'cms' })).status).toBe(201)
    const earlier = t.iam.liveRefreshTokens.at(-1)!
    const { answers, added, removed } = await liveAtIamAfter(() => racing('rudi', 2, [
      () => t.register(token, { provider: 'cms' }),
      () => t.register(token, { provider: 'cms' }),
    ]))
    expect(answers.map((a) => a.status)).toEqual([201, 201])
    expect(removed).toEqual([earlier])
    expect(added).toHaveLength(1)
    expect((await t.jobToken('rudi', 'cms', t.creddToken())).status).toBe(200)
  })

  it('answers the loser 503 with Retry-After when the winner registered something else, and still revokes its token', async () => {
    const token = await t.userToken({ preferred_username: 'rosa', sub: 'rosa-sub' })
    const { answers, added } = await liveAtIamAfter(() => racing('rosa', 2, [
      () => t.register(token, { provider: 'cms', scopes: 'compute.read' }),
      () => t.register(token, { provider: 'cms', scopes: 'compute.read compute.create', audience: SE }),
    ]))
    const statuses = answers.map((a) => a.status).sort()
    expect(statuses).toEqual([201, 503])
    const loser = answers.find((a) => a.status === 503)!
    expect(loser.headers.get('retry-after')).toBe('1')
    expect(await loser.json()).toEqual({ error: 'temporarily_unavailable', error_description: expect.stringMatching(/registration .* same moment/) })
    expect(added).toHaveLength(1)
    expect((await t.jobToken('rosa', 'cms', t.creddToken())).status).toBe(200)
  })
})
