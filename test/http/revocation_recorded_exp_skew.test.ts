// A jti entry taken for a token that expired less than 60 s ago (the clock skew allowed: HTCondor judges an
// IDTOKEN's exp on its own clock, with no allowance of its own) is held until exp + 60 s, so a daemon whose
// clock lags the broker's still refuses the token. That held only for an exp sent in the request: the same
// revocation sent without exp (as docs/audit.md advises, and as teardown sends an exp that looks past) took the
// exp the audit log recorded and stored an entry that had already ended.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { TEST_NOW, testDeps } from '../support/broker_deps.ts'

const ADMIN = 'b'.repeat(43)

function setup() {
  const store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }), knownIssuers: () => new Set(),
  })
  const app = createApp(testDeps({ admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(ADMIN).digest())] } }))
  const post = (body: unknown) => app.request('/v1/revocations', {
    method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  })
  const issued = (jti: string, exp: number) => store.record({ type: 'token.issued', time: exp - 3600, role: 'pilot', jti, exp, decision: 'allow', tokenKind: 'idtoken' })
  return { post, issued }
}

describe('a jti revocation of a token that expired within the skew allowance', () => {
  it('without exp, holds the entry until the recorded exp + 60 s', async () => {
    const { post, issued } = setup()
    await issued('j-1', TEST_NOW - 30)
    const res = await post({ jti: 'j-1' })
    expect(res.status).toBe(201)
    expect(await res.json()).toMatchObject({ revocation: { kind: 'jti', value: 'j-1', until: TEST_NOW + 30 } })
  })

  it('with an exp earlier than the recorded one, holds it until the recorded exp + 60 s', async () => {
    const { post, issued } = setup()
    await issued('j-2', TEST_NOW - 10)
    const res = await post({ jti: 'j-2', exp: TEST_NOW - 50 })
    expect(res.status).toBe(201)
    // The token lives until its recorded exp; a clock 60 s behind the broker's takes it until TEST_NOW + 50.
    expect(await res.json()).toMatchObject({ revocation: { kind: 'jti', value: 'j-2', until: TEST_NOW + 50 } })
  })
})
