import { http } from 'msw'
import { beforeEach, describe, expect, it } from 'vitest'
import { SE, useCredentialsApp } from '../support/credentials_app.ts'

/**
 * The job-token 403 says whether the credential itself is gone (docs/job-credentials.md, "When the
 * credential itself is gone"): `"credential": "unknown" | "revoked" | "outdated"` beside `error` and
 * `error_description` when only a new registration brings it back, so a credmon may end the `.top` the
 * credd holds (as HTCondor's Vault credmon ends `.top` and `.use` on Vault's "permission denied") and the
 * user's next condor_submit registers again. A refusal the operator can lift (policy, fetched_by, a
 * revoked identity, a broker without its IAM client) carries no such member: the `.top` must stay so the
 * credmon resumes by itself once the operator has fixed it. Expected bodies come from that contract.
 */
const HOUR = 3600
const clock = { t: Math.floor(Date.now() / 1000), now() { return this.t } }
const t = await useCredentialsApp({ clock })

beforeEach(() => {
  t.iam.tokenRequests = []
  t.iam.rotateRefreshTokens = true
  t.iam.faults.token = 'ok'
})

async function registered(user: string, provider = 'cms', claims: Record<string, unknown> = {}) {
  const res = await t.register(await t.userToken({ preferred_username: user, sub: `${user}-sub`, ...claims }), { provider })
  expect(res.status, await res.clone().text()).toBe(201)
}

/** The 403 of a credential that is gone: the OAuth error and the marker, nothing else. */
const gone = (credential: string) => ({ error: 'access_denied', error_description: expect.any(String), credential })
/** Any other 403: the OAuth error alone. */
const refusedOnly = { error: 'access_denied', error_description: expect.any(String) }

/** A credential row as a broker before IAM rechecks (or before client ids) wrote it: no sealed refresh token. */
async function legacyRow(user: string, provider: 'cms' | 'se-storage', kind: 'iam' | 'scitoken') {
  const now = clock.now()
  const credential = {
    user, provider, kind, iss: t.iam.issuer, sub: `${user}-sub`, scopes: ['storage.read:/store/user'], audience: [SE],
    subjectJson: JSON.stringify({ iss: t.iam.issuer, sub: `${user}-sub`, groups: ['/htc/users'], scopes: [], exp: now + HOUR, preferred_username: user, claims: { preferred_username: user, 'wlcg.groups': ['/htc/users'] } }),
    createdAt: now, revoked: false,
  }
  await t.store.writeCredential({ action: 'register', credential }, { type: 'credential.registered', time: now, decision: 'allow', detail: { user, provider, kind } })
}

describe('the job-token 403 marks a credential that is gone for good', () => {
  it('"unknown" when no credential is registered for that user and name', async () => {
    const res = await t.jobToken('nobody', 'cms', t.creddToken())
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual(gone('unknown'))
    // A handle never registered is its own unknown credential, even beside a live provider credential.
    await registered('abel')
    const handle = await t.jobToken('abel', 'cms_write', t.creddToken())
    expect(handle.status).toBe(403)
    expect(await handle.json()).toEqual(gone('unknown'))
  })

  it('"revoked" after an admin revoked it, on every read that follows', async () => {
    await registered('bea')
    expect((await t.jobToken('bea', 'cms', t.creddToken())).status).toBe(200)
    const del = await t.app.request('/v1/credentials/bea/cms', { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })
    expect(del.status).toBe(200)
    for (let i = 0; i < 2; i++) {
      const res = await t.jobToken('bea', 'cms', t.creddToken())
      expect(res.status).toBe(403)
      expect(await res.json()).toEqual(gone('revoked'))
    }
  })

  it('"revoked" when IAM refuses the stored refresh token (invalid_grant), kind iam: at that read and after', async () => {
    await registered('cleo')
    t.iam.clearRefreshTokens()
    const first = await t.jobToken('cleo', 'cms', t.creddToken())
    expect(first.status).toBe(403)
    expect(await first.json()).toEqual(gone('revoked'))
    expect(await t.store.readCredential('cleo', 'cms')).toMatchObject({ revoked: true, revokedBy: 'iam' })
    const next = await t.jobToken('cleo', 'cms', t.creddToken())
    expect(await next.json()).toEqual(gone('revoked'))
  })

  it('"revoked" when IAM refuses the refresh token of a scitoken credential\'s recheck', async () => {
    await registered('dora', 'se-storage')
    t.iam.clearRefreshTokens()
    clock.t += 2 * HOUR
    const res = await t.jobToken('dora', 'se-storage', t.creddToken(), '?minimum_seconds=999999')
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual(gone('revoked'))
    expect(await t.store.readCredential('dora', 'se-storage')).toMatchObject({ revoked: true, revokedBy: 'iam' })
  })

  it('"revoked" when the credential is revoked while its refresh token rotates at IAM', async () => {
    await registered('gwen')
    // IAM has answered the refresh and rotated the refresh token; its write waits until an admin has revoked.
    const res = await t.whileRotationWaits('gwen', () => t.jobToken('gwen', 'cms', t.creddToken(), '?minimum_seconds=999999'), async () => {
      const del = await t.app.request('/v1/credentials/gwen/cms', { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })
      expect(del.status).toBe(200)
    })
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual(gone('revoked'))
  })

  it('"outdated" for a credential that holds no IAM refresh token and must be registered again, either kind', async () => {
    await legacyRow('egon', 'se-storage', 'scitoken')
    const sci = await t.jobToken('egon', 'se-storage', t.creddToken(), '?minimum_seconds=999999')
    expect(sci.status).toBe(403)
    expect(await sci.json()).toEqual({ ...gone('outdated'), error_description: expect.stringContaining('register again') })
    await legacyRow('egon', 'cms', 'iam')
    const iam = await t.jobToken('egon', 'cms', t.creddToken(), '?minimum_seconds=999999')
    expect(iam.status).toBe(403)
    expect(await iam.json()).toEqual({ ...gone('outdated'), error_description: expect.stringContaining('register again') })
    expect(t.iamRequests('refresh_token')).toHaveLength(0)
  })
})

describe('a 403 the operator can lift carries no marker (the .top must stay)', () => {
  it('the policy no longer grants what the credential holds', async () => {
    await registered('finn')
    try {
      t.setPolicy((p) => p.replace('scopes: [compute.read, compute.create, "storage.read:/store/user", "storage.create:/store/user"]', 'scopes: [compute.read, "storage.read:/store/user"]'))
      const res = await t.jobToken('finn', 'cms', t.creddToken(), '?minimum_seconds=999999')
      expect(res.status).toBe(403)
      expect(await res.json()).toEqual(refusedOnly)
    } finally {
      t.setPolicy()
    }
    expect((await t.jobToken('finn', 'cms', t.creddToken(), '?minimum_seconds=999999')).status).toBe(200)
  })

  it('no rule that matches the user grants the provider\'s role any more, kind iam and scitoken', async () => {
    await registered('gus')
    await registered('gus', 'se-storage')
    try {
      t.setPolicy((p) => p.replace('      groups: [/htc/users]', '      groups: [/htc/other]'))
      for (const provider of ['cms', 'se-storage']) {
        const res = await t.jobToken('gus', provider, t.creddToken(), '?minimum_seconds=999999')
        expect(res.status).toBe(403)
        expect(await res.json()).toEqual(refusedOnly)
      }
    } finally {
      t.setPolicy()
    }
  })

  it('the policy does not let this credd fetch (fetched_by), whether or not the credential exists', async () => {
    await registered('hedy')
    for (const user of ['hedy', 'nobody-here']) {
      const res = await t.jobToken(user, 'cms', t.creddToken({ role: 'schedd' }))
      expect(res.status).toBe(403)
      expect(await res.json()).toEqual(refusedOnly)
    }
  })

  it('the user who registered it is revoked (sub): an identity revocation, not the credential\'s', async () => {
    await registered('ida')
    const { id } = await t.revocations.revoke({ kind: 'sub', value: 'ida-sub' }, { principal: 'test' })
    try {
      const res = await t.jobToken('ida', 'cms', t.creddToken())
      expect(res.status).toBe(403)
      expect(await res.json()).toEqual(refusedOnly)
    } finally {
      await t.revocations.lift(id, {}, { principal: 'test' })
    }
  })

  it('the broker has no client at the IAM any more (IAM not asked: nothing revoked)', async () => {
    await registered('jon')
    const clientless = await t.withoutBrokerClient()
    const res = await clientless.request('/v1/credentials/jon/cms/token?minimum_seconds=999999', { headers: { authorization: `Bearer ${t.creddToken()}` } })
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual(refusedOnly)
    expect(await t.store.readCredential('jon', 'cms')).toMatchObject({ revoked: false })
  })
})

describe('a live credential is never marked gone', () => {
  it('when another replica rotated its refresh token at both of IAM\'s refusals (the row is live and the next read is served)', async () => {
    await registered('lena')
    // Another replica on the same database: each time this broker sends IAM the row's refresh token, that
    // replica has just spent it (IAM rotated it for the other replica, which stored the new one), so IAM
    // refuses this broker's copy with invalid_grant. Nothing revoked the credential at IAM or here.
    const replica = t.restartCredentials()
    let racing = true
    let spentByReplica = 0
    t.msw.use(http.post(t.iam.tokenEndpoint, async ({ request }) => {
      const body = new URLSearchParams(await request.clone().text())
      if (!racing || body.get('grant_type') !== 'refresh_token') return undefined
      racing = false
      try {
        const other = await replica.app.request('/v1/credentials/lena/cms/token?minimum_seconds=999999', { headers: { authorization: `Bearer ${t.creddToken()}` } })
        expect(other.status).toBe(200)
        spentByReplica++
      } finally {
        racing = spentByReplica < 2
      }
      // The real IAM's answer to a refresh token already spent: the default handler, now that it is.
      return undefined
    }))
    try {
      const res = await t.jobToken('lena', 'cms', t.creddToken(), '?minimum_seconds=999999')
      expect(spentByReplica).toBe(2)
      const body = await res.json() as Record<string, unknown>
      // docs/job-credentials.md: a credential rotated by another replica meanwhile is 503 with Retry-After.
      expect(res.status, JSON.stringify(body)).toBe(503)
      expect(res.headers.get('retry-after')).toBe('1')
      expect(body.credential).toBeUndefined()
      expect(await t.store.readCredential('lena', 'cms')).toMatchObject({ revoked: false })
    } finally {
      racing = false
      await replica.credentials.close()
    }
    expect((await t.jobToken('lena', 'cms', t.creddToken(), '?minimum_seconds=999999')).status).toBe(200)
  })

  it('when the user registered afresh just as IAM\'s refusal of the old refresh token was being recorded', async () => {
    await registered('mona')
    // The old refresh token dies at IAM; the broker watches the row for a rotation, then records the refusal.
    // Between its last look at the row and that write, the user's next condor_submit registers afresh: the
    // refusal was of the old registration's token, and must not revoke the new one.
    t.iam.clearRefreshTokens()
    const write = t.store.writeCredential.bind(t.store)
    let registeredMeanwhile = false
    t.store.writeCredential = async (w, e) => {
      if (w.action === 'revoke' && w.user === 'mona' && !registeredMeanwhile) {
        registeredMeanwhile = true
        clock.t += 1
        await registered('mona')
      }
      return write(w, e)
    }
    let res: Response
    try {
      res = await t.jobToken('mona', 'cms', t.creddToken(), '?minimum_seconds=999999')
    } finally {
      t.store.writeCredential = write
    }
    expect(registeredMeanwhile).toBe(true)
    const body = await res.json() as Record<string, unknown>
    expect(body.credential, JSON.stringify(body)).toBeUndefined()
    expect(await t.store.readCredential('mona', 'cms')).toMatchObject({ revoked: false })
    expect((await t.jobToken('mona', 'cms', t.creddToken(), '?minimum_seconds=999999')).status).toBe(200)
  })
})

describe('the Vault-compatible listener', () => {
  it('answers "permission denied" (HTCondor\'s Vault credmon then deletes .top and .use) when IAM refused the refresh token', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'kim' }), { provider: 'cms', mode: 'vault' })
    const top = (await reg.json() as { top: { vault_token: string; vault_url: string } }).top
    t.iam.clearRefreshTokens()
    const res = await t.vault.request(`${new URL(top.vault_url).pathname}?minimum_seconds=2400`, { headers: { 'X-Vault-Token': top.vault_token } })
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual({ errors: ['permission denied'] })
    expect(await t.store.readCredential('kim', 'cms')).toMatchObject({ revoked: true, revokedBy: 'iam' })
  })
})
