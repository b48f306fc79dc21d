import { decodeJwt } from 'jose'
import { describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * A cached job token is handed on only under the policy that decided it (docs/job-credentials.md, "Reuse
 * and single flight"). A SciToken is decided after IAM has confirmed the user, an await during which the
 * policy can be reloaded: the token must then carry the digest of the policy that decided it, not of the one
 * in force when the request arrived, or a reload back to that one hands on a token it never decided.
 * Time is moved, never waited for.
 */
const clock = { t: Math.floor(Date.now() / 1000), now() { return this.t } }
const t = await useCredentialsApp({ clock })
const uidDomain = t.config.policy.uid_domain ?? t.config.trust_domain
const STORAGE_IDENTITY = '      - role: job-storage\n        identity: "{preferred_username}@{uid_domain}"'

describe('a policy reload while a SciToken is being obtained', () => {
  it('does not let a reload back to the earlier policy hand on the token the reload in between decided', async () => {
    expect((await t.register(await t.userToken({ preferred_username: 'yann' }), { provider: 'se-storage' })).status).toBe(201)
    // Past credentials.iam_recheck_interval (default 1 h): the next mint asks IAM to confirm the user first.
    clock.t += 3601
    const credd = t.creddToken()
    const during = await t.whileRotationWaits('yann', () => t.jobToken('yann', 'se-storage', credd), async () => {
      t.setPolicy((p) => {
        if (!p.includes(STORAGE_IDENTITY)) throw new Error('the test policy has no job-storage identity to edit')
        return p.replace(STORAGE_IDENTITY, '      - role: job-storage\n        identity: "{preferred_username}@hpc.example.org"')
      })
    })
    expect(during.status).toBe(200)
    // Decided under the policy in force when it was decided (the reload's).
    expect(decodeJwt((await during.json() as { access_token: string }).access_token).sub).toBe('yann@hpc.example.org')
    // The earlier policy back in force: its identity, not the token the other policy decided.
    t.setPolicy()
    const after = await t.jobToken('yann', 'se-storage', credd)
    expect(after.status).toBe(200)
    expect(decodeJwt((await after.json() as { access_token: string }).access_token).sub).toBe(`yann@${uidDomain}`)
  })
})
