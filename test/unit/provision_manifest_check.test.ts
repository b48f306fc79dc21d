import { describe, expect, it } from 'vitest'
import { BrokerClient, type Fetch } from '../../src/clients/provision/broker_client.ts'
import { manifestDisagreements } from '../../src/clients/provision/manifest_check.ts'
import type { ManifestCertificate, ManifestToken } from '../../src/clients/provision/render.ts'

// Teardown revokes what a manifest lists, and the broker revokes any jti or serial it is sent: the manifest is
// checked against the broker's audit log (GET /v1/audit) first. The broker here answers from a list of events.
const OPERATOR = { iss: 'https://iam.example.org/', sub: 'provisioner' }
const JTI = { cm: 'a'.repeat(32), pilots: 'b'.repeat(32) }

const cmToken: ManifestToken = { jti: JTI.cm, sub: 'condor@pool.example.org', role: 'central-manager', node: 'cm', host: 'cm.example.org', kind: 'idtoken', exp: 1_800_000_000 }
const enrolment: ManifestToken = { jti: JTI.pilots, sub: 'provisioner', role: 'pilot', node: 'hpc', kind: 'pilot_enrolment', exp: 1_800_000_000 }
const cmCert: ManifestCertificate = { serial: '0a1b', node: 'cm', host: 'cm.example.org', not_after: 1_800_000_000 }

const issued = {
  cm: { type: 'token.issued', decision: 'allow', caller: OPERATOR, role: 'central-manager', tokenKind: 'idtoken', issuedSub: 'condor@pool.example.org', jti: JTI.cm, exp: 1_800_000_000, detail: { host: 'cm.example.org' } },
  pilots: { type: 'token.issued', decision: 'allow', caller: OPERATOR, role: 'pilot', tokenKind: 'pilot_enrolment', jti: JTI.pilots },
  cert: { type: 'certificate.issued', decision: 'allow', caller: OPERATOR, issuedSub: 'cm.example.org', detail: { serial: '0A1B' } },
}

function brokerWith(events: Array<Record<string, unknown>>): BrokerClient {
  const fetch: Fetch = async (url) => {
    const q = new URL(url).searchParams
    const hit = events.filter((e) => e.type === q.get('type') && (!q.has('jti') || e.jti === q.get('jti')) && (!q.has('sub') || e.issuedSub === q.get('sub')))
    return { status: 200, text: async () => JSON.stringify({ records: hit.map((event, i) => ({ seq: i + 1, event })) }) }
  }
  return new BrokerClient({ url: 'https://broker.example.org', bearer: 'x', fetch })
}

const manifest = (tokens: ManifestToken[], certificates: ManifestCertificate[] = [], created_at = 1_700_000_000) => ({ tokens, certificates, created_at })

describe('a manifest checked against the broker before teardown', () => {
  it('agrees when each entry is on record as the manifest states it (an enrolment credential\'s sub is the operator\'s)', async () => {
    expect(await manifestDisagreements(manifest([cmToken, enrolment], [cmCert]), brokerWith(Object.values(issued)))).toEqual([])
  })

  // A template may spell a host with capitals; render writes it so, and the broker lower-cases DNS names before it
  // issues (src/ca/certificate_service.ts, as for a daemon token's host) and records that spelling as issuedSub.
  it('finds a certificate the broker recorded under the lower-case spelling of the manifest\'s host', async () => {
    const broker = brokerWith(Object.values(issued))
    expect(await manifestDisagreements(manifest([{ ...cmToken, host: 'CM.Example.ORG' }], [{ ...cmCert, host: 'CM.Example.ORG' }]), broker)).toEqual([])
  })

  it('names an entry whose kind, role, sub or host differs from the record', async () => {
    const broker = brokerWith(Object.values(issued))
    expect(await manifestDisagreements(manifest([{ ...cmToken, kind: 'pilot_enrolment' }]), broker)).toEqual([`token ${JTI.cm} (cm): the broker issued it as kind idtoken, not pilot_enrolment`])
    expect(await manifestDisagreements(manifest([{ ...cmToken, role: 'startd' }]), broker)).toEqual([`token ${JTI.cm} (cm): the broker issued it for role central-manager, not startd`])
    expect(await manifestDisagreements(manifest([{ ...enrolment, sub: 'someone' }]), broker)).toEqual([`token ${JTI.pilots} (hpc): the broker issued it to sub provisioner, not someone`])
    expect(await manifestDisagreements(manifest([{ ...cmToken, host: 'other.example.org' }]), broker)).toEqual([`token ${JTI.cm} (cm): the broker issued it for host cm.example.org, not other.example.org`])
  })

  // Teardown sends a daemon token's exp, and the broker holds the revocation until then: an earlier exp written
  // into the manifest would let the token outlive its revocation.
  it('names a daemon token whose exp differs from the record', async () => {
    expect(await manifestDisagreements(manifest([{ ...cmToken, exp: 1_700_000_000 }]), brokerWith(Object.values(issued))))
      .toEqual([`token ${JTI.cm} (cm): the broker issued it to expire at 1800000000, not 1700000000`])
  })

  it('refuses entries issued to two callers: one render runs under one operator', async () => {
    const broker = brokerWith([issued.cm, { ...issued.pilots, caller: { iss: OPERATOR.iss, sub: 'someone-else' } }])
    expect(await manifestDisagreements(manifest([cmToken, { ...enrolment, sub: 'someone-else' }]), broker))
      .toEqual(['its entries were issued to 2 different callers (https://iam.example.org/ provisioner; https://iam.example.org/ someone-else); one render runs under one operator'])
  })

  it('lets an entry without a record through only when retention pruned the log past the render', async () => {
    const checkpoint = { type: 'audit.checkpoint', caller: { sub: 'retention' }, detail: { before: 1_700_000_100 } }
    expect(await manifestDisagreements(manifest([cmToken], [cmCert], 1_700_000_000), brokerWith([checkpoint]))).toEqual([])
    expect(await manifestDisagreements(manifest([cmToken], [cmCert], 1_700_000_200), brokerWith([checkpoint]))).toEqual([
      `token ${JTI.cm} (cm): the broker has no record of issuing it`,
      'certificate 0a1b (cm): the broker has no record of issuing it for cm.example.org',
    ])
  })
})
