import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { AuditStoreUnavailable, InvalidToken } from '../../src/errors.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import type { Clock } from '../../src/lib/clock.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { testDeps, TEST_NOW } from '../support/broker_deps.ts'
import { opensslCrlEntries } from '../support/openssl_crl.ts'
import { CERT_ISS, CERT_OPERATOR, certificateSite, csr } from '../support/certificate_fixture.ts'
import { createHash } from 'node:crypto'
import { expectRetryLaterAnswer } from '../support/retry_later_answer.ts'

const ISS = CERT_ISS
const OPERATOR = CERT_OPERATOR
const ADMIN = 'a'.repeat(43)

async function app() {
  return (await appWithStore()).a
}

async function appWithStore(options: { sites?: string[]; clock?: Clock } = {}) {
  const { store, clock, service } = await certificateSite(options)
  const revocations = new RevocationService({ store, clock, log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 5, knownLabels: () => ({ roles: new Set(['schedd']), sites: new Set(options.sites) }), knownIssuers: () => new Set([ISS]) })
  await revocations.refresh()
  // 'delegated-token': the operator's token as IAM reissues it by token exchange to client broker (RFC 8693 §4.1 act).
  const verifyCaller = async (bearer: string) => {
    if (bearer === 'delegated-token') return { ...OPERATOR, claims: { act: { sub: 'broker' } } }
    if (bearer !== 'operator-token') throw new InvalidToken('the IAM access token is not valid', { presented: true })
    return OPERATOR
  }
  const a = createApp(testDeps({
    certificates: { service, verifyCaller },
    admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(ADMIN).digest())] },
  }))
  return { a, store }
}

const post = async (a: Awaited<ReturnType<typeof app>>, body: unknown, auth = 'Bearer operator-token') =>
  a.request('/v1/certificates', { method: 'POST', headers: { 'content-type': 'application/json', authorization: auth }, body: JSON.stringify(body) })

describe('pool CA over HTTP', () => {
  it('serves the CA certificate and a CRL to anyone', async () => {
    const a = await app()
    const ca = await a.request('/v1/ca/certificate')
    expect(ca.status).toBe(200)
    expect(await ca.text()).toMatch(/^-----BEGIN CERTIFICATE-----/)
    const crl = await a.request('/v1/ca/crl')
    expect(crl.status).toBe(200)
    expect(await crl.text()).toMatch(/^-----BEGIN X509 CRL-----/)
  })

  it('issues for an admitted caller, and refuses one without a token or with a bad body', async () => {
    const a = await app()
    const ok = await post(a, { csr: await csr(), role: 'schedd', dns: ['ap1.example.org'] })
    expect(ok.status).toBe(201)
    expect(ok.headers.get('cache-control')).toBe('no-store')
    const body = await ok.json() as { certificate: string; serial: string; not_after: number }
    expect(body.not_after).toBe(TEST_NOW + 86400)
    expect(body.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/)

    const anon = await a.request('/v1/certificates', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    expect(anon.status).toBe(401)
    expect(await anon.json()).toMatchObject({ error: 'invalid_token' })
    expect((await post(a, { csr: await csr(), role: 'schedd', dns: ['ap1.example.org'] }, 'Bearer forged')).status).toBe(401)
    const extra = await post(a, { csr: await csr(), role: 'schedd', dns: ['ap1.example.org'], key: 'x' })
    expect(extra.status).toBe(400)
    expect(await extra.json()).toEqual({ error: 'invalid_request', error_description: 'unknown field key' })
    const denied = await post(a, { csr: await csr(), role: 'schedd', dns: ['evil.example.net'] })
    expect(denied.status).toBe(400)
    expect(await denied.json()).toEqual({ error: 'invalid_target', error_description: 'host evil.example.net is not allowed for role schedd' })
    const badCsr = await post(a, { csr: 'nope', role: 'schedd', dns: ['ap1.example.org'] })
    expect(await badCsr.json()).toEqual({ error: 'invalid_request', error_description: 'csr is not a PEM PKCS#10 certificate request' })
  })

  // RFC 6749 §4.1.2.1 `temporarily_unavailable`, RFC 9110 §15.6.4 Retry-After: a store outage is answered as
  // one, so provisioning retries; the certificate still leaves only once its serial is on record.
  it('answers an audit store outage 503 temporarily_unavailable with Retry-After, and no certificate', async () => {
    const { a, store } = await appWithStore()
    const record = store.record.bind(store)
    store.record = async () => { throw new AuditStoreUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })) }
    try {
      const res = await post(a, { csr: await csr(), role: 'schedd', dns: ['ap1.example.org'] })
      await expectRetryLaterAnswer(res, 'certificate')
    } finally {
      store.record = record
    }
    expect((await post(a, { csr: await csr(), role: 'schedd', dns: ['ap1.example.org'] })).status).toBe(201)
  })

  it('answers a dry run with the policy decision, signing and recording nothing', async () => {
    const { a, store } = await appWithStore()
    const yes = await post(a, { role: 'schedd', dns: ['ap1.example.org'], dry_run: true })
    expect(yes.status).toBe(200)
    expect(await yes.json()).toEqual({ dry_run: { allow: true, rule: 'ops', lifetime: 86400 } })
    const no = await post(a, { role: 'schedd', dns: ['ap1.example.org'], ip: ['10.0.0.1'], dry_run: true })
    expect(await no.json()).toEqual({ dry_run: { allow: false, error: 'invalid_target', reason: 'address 10.0.0.1 is not allowed in a certificate for role schedd' } })
    expect((await store.query({ limit: 10 })).records).toEqual([])
    const noCsr = await post(a, { role: 'schedd', dns: ['ap1.example.org'] })
    expect(await noCsr.json()).toEqual({ error: 'invalid_request', error_description: 'csr is required' })
  })

  it('records every refusal of a verified caller as certificate.denied, not only the policy\'s', async () => {
    // docs/audit.md: a refusal of a caller whose token verified is one record, whatever was wrong with the
    // request, as on POST /token. A CSR for a key the caller does not hold, or a wildcard name, is an
    // attempt worth seeing in the audit log, not only in the answer.
    const { a, store } = await appWithStore()
    const good = Buffer.from(x509.PemConverter.decodeFirst(await csr()))
    good[good.length - 5]! ^= 0x01
    const forged = x509.PemConverter.encode(good.buffer as ArrayBuffer, 'CERTIFICATE REQUEST')
    const refusals: Array<[string, () => Promise<Response>, string]> = [
      ['forged proof of possession', async () => post(a, { csr: forged, role: 'schedd', dns: ['ap1.example.org'] }), 'invalid_request: the CSR signature does not verify'],
      ['wildcard name', async () => post(a, { csr: await csr(), role: 'schedd', dns: ['*.example.org'] }), 'invalid_request: dns: "*.example.org" is not a lower-case DNS host name'],
      ['unknown field', async () => post(a, { csr: await csr(), role: 'schedd', dns: ['ap1.example.org'], key: 'x' }), 'invalid_request: unknown field key'],
      ['no csr', async () => post(a, { role: 'schedd', dns: ['ap1.example.org'] }), 'invalid_request: csr is required'],
      ['not JSON', async () => a.request('/v1/certificates', { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer operator-token' }, body: '{' }), 'invalid_request: body is not valid JSON'],
    ]
    for (const [what, send, reason] of refusals) {
      const res = await send()
      expect(res.status, what).toBe(400)
      const records = (await store.query({ limit: 10, type: 'certificate.denied' })).records
      expect(records.length, what).toBe(refusals.findIndex(([w]) => w === what) + 1)
      expect(records[0]!.event, what).toMatchObject({ decision: 'deny', tokenKind: 'host_certificate', caller: { iss: ISS, sub: 'provisioner' }, reason })
    }
    // Nobody to name: a bearer that does not verify is counted, not recorded one by one.
    expect((await post(a, { csr: forged, role: 'schedd', dns: ['ap1.example.org'] }, 'Bearer forged')).status).toBe(401)
    expect((await store.query({ limit: 10, type: 'certificate.denied' })).records).toHaveLength(refusals.length)
  })

  it('refuses a delegated IAM token (act) as invalid_token, on record as certificate.denied under its subject', async () => {
    // docs/audit.md: a caller whose token verified is named in one record per refusal; the token of another
    // client acting for the provisioner verified, and that attempt is what the audit log must show.
    const { a, store } = await appWithStore()
    const res = await post(a, { csr: await csr(), role: 'schedd', dns: ['ap1.example.org'] }, 'Bearer delegated-token')
    expect(res.status).toBe(401)
    expect(await res.json()).toEqual({ error: 'invalid_token', error_description: "delegation not supported: subject_token was issued to 'broker' acting for its subject (act claim); present the caller's own IAM token" })
    const records = (await store.query({ limit: 10, type: 'certificate.denied' })).records
    expect(records).toHaveLength(1)
    expect(records[0]!.event).toMatchObject({ decision: 'deny', tokenKind: 'host_certificate', caller: { iss: ISS, sub: 'provisioner' }, reason: "invalid_token: delegation not supported: subject_token was issued to 'broker' acting for its subject (act claim); present the caller's own IAM token" })
    expect((await store.query({ limit: 10, type: 'certificate.issued' })).records).toHaveLength(0)
  })

  it('revokes by serial for admins only, and the CRL lists it', async () => {
    const a = await app()
    const { serial } = await (await post(a, { csr: await csr(), role: 'schedd', dns: ['ap1.example.org'] })).json() as { serial: string }
    expect((await a.request(`/v1/certificates/${serial}`, { method: 'DELETE', headers: { authorization: 'Bearer operator-token' } })).status).toBe(401)
    const del = await a.request(`/v1/certificates/${serial}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } })
    expect(del.status).toBe(201)
    expect(await del.json()).toMatchObject({ serial })
    expect((await a.request(`/v1/certificates/${serial}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(200)
    const unknown = await a.request('/v1/certificates/0abc', { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } })
    expect(unknown.status).toBe(404)
    const crl = new x509.X509Crl(await (await a.request('/v1/ca/crl')).text())
    expect(crl.entries.map((e) => e.serialNumber.toLowerCase())).toEqual([serial])
  })
})

describe('pool CA and identity revocations over HTTP', () => {
  it('holds a revoked site\'s certificates on the CRL, refuses it new ones, and releases both on the lift', async () => {
    let now = TEST_NOW
    const { a } = await appWithStore({ sites: ['cloud-a', 'cloud-b'], clock: { now: () => now } })
    const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
    const issue = async (site: string, host: string) => post(a, { csr: await csr(), role: 'schedd', site, dns: [host] })
    const serialOf = async (res: Response) => { expect(res.status).toBe(201); return ((await res.json()) as { serial: string }).serial }
    const a1 = await serialOf(await issue('cloud-a', 'ap1.example.org'))
    const a2 = await serialOf(await issue('cloud-a', 'ap2.example.org'))
    const b1 = await serialOf(await issue('cloud-b', 'ap3.example.org'))

    const revoked = await a.request('/v1/revocations', { method: 'POST', headers: admin, body: JSON.stringify({ site: 'cloud-a', reason: 'compromised' }) })
    expect(revoked.status).toBe(201)
    const { revocation } = await revoked.json() as { revocation: { id: number } }
    const crl = opensslCrlEntries(await (await a.request('/v1/ca/crl')).text())
    expect(crl).toEqual(new Map([[a1, 'Certificate Hold'], [a2, 'Certificate Hold']]))
    expect(crl.has(b1)).toBe(false)

    const refused = await issue('cloud-a', 'ap4.example.org')
    expect(refused.status).toBe(400)
    expect(await refused.json()).toEqual({ error: 'unauthorized_client', error_description: 'site cloud-a has been revoked' })
    const plan = await post(a, { role: 'schedd', site: 'cloud-a', dns: ['ap4.example.org'], dry_run: true })
    expect(await plan.json()).toEqual({ dry_run: { allow: false, error: 'unauthorized_client', reason: 'site cloud-a has been revoked' } })
    expect((await issue('cloud-b', 'ap5.example.org')).status).toBe(201)

    expect((await a.request(`/v1/revocations/${revocation.id}`, { method: 'DELETE', headers: admin })).status).toBe(200)
    now += 11
    expect(opensslCrlEntries(await (await a.request('/v1/ca/crl')).text())).toEqual(new Map())
    expect((await issue('cloud-a', 'ap4.example.org')).status).toBe(201)
  })
})
