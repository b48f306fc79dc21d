import { describe, expect, it } from 'vitest'
import { BrokerClient, type Fetch } from '../../src/clients/provision/broker_client.ts'
import { teardown } from '../../src/clients/provision/teardown.ts'

// Teardown revokes each daemon token by jti, and a pilot group by its enrolment (`pilot-enrolment`: the
// credential's jti), which also puts `ctb_enrolment =?= "JTI"` into SEC_TOKEN_REVOCATION_EXPR, so the group's
// running pilots are cut off at the collector, and no other cluster's pilots at the site are (docs/pilots.md). An IDTOKEN's revocation need hold only until that token's
// exp, which the manifest records. A pilot enrolment credential's must hold until its pilots' tokens have
// expired (docs/pilots.md §3), which its own exp says nothing about: it is left to the broker, which finds
// the credential in its log, or, when retention has pruned that record, holds the entry until everything it
// has issued has expired. With the credential's exp sent, a pruned record left a cluster torn down after the
// credential expired with an entry that was over before it began, and its pilots renewing.
describe('provision teardown', () => {
  it('sends the exp of a daemon token, and revokes a pilot enrolment credential as a pilot-enrolment, without exp', async () => {
    const bodies: Record<string, unknown>[] = []
    const fetch: Fetch = async (_url, init) => {
      bodies.push(JSON.parse(init.body ?? '{}') as Record<string, unknown>)
      return { status: 201, text: async () => JSON.stringify({ id: bodies.length }) }
    }
    const broker = new BrokerClient({ url: 'https://broker.example.org', bearer: 'x', fetch })
    const r = await teardown({
      template: { name: 'hybrid', version: '1' }, certificates: [],
      tokens: [
        { jti: 'a'.repeat(32), sub: 'startd-1@eps.pool.example.org', role: 'startd', node: 'ep', kind: 'idtoken', exp: 1_800_000_000 },
        { jti: 'b'.repeat(32), sub: 'factory', role: 'pilot', node: 'hpc', kind: 'pilot_enrolment', exp: 1_800_000_100 },
      ],
    }, broker)
    expect(r.failures).toEqual([])
    expect(bodies).toEqual([
      { jti: 'a'.repeat(32), reason: 'teardown of hybrid', exp: 1_800_000_000 },
      { 'pilot-enrolment': 'b'.repeat(32), reason: 'teardown of hybrid' },
    ])
  })
})
