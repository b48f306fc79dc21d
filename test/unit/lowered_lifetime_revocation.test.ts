import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as x509 from '@peculiar/x509'
import { describe, expect, it } from 'vitest'
import { pruneExpired } from '../../src/audit/retention.ts'
import { CertificateService } from '../../src/ca/certificate_service.ts'
import { certificateRetentionFloor } from '../../src/ca/certificate_retention.ts'
import { initPoolCa, PoolCa } from '../../src/ca/pool_ca.ts'
import { listLivePilots, liveWindow } from '../../src/issuance/pilot_list.ts'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { opensslCrlEntries } from '../support/openssl_crl.ts'
import { tempDir } from '../support/tmp.ts'

// An admin lowers a maximum lifetime (restarting the broker with it) while tokens and certificates issued
// under the old one are still valid. A revocation made after that must hold them for their own lifetime,
// not for the new maximum's: otherwise they become valid again once the shorter window has passed.

const NOW = Math.floor(Date.now() / 1000)
const HOUR = 3600
const DAY = 86_400
const ADMIN = { principal: 'bootstrap' }
const ISS = 'https://iam.example.org/'
const SUB = 'schedd-ap1@aps.pool.example.org'

function tokens(store: MemoryStore, clock: { now: () => number }, maxTokenLifetime: number) {
  const svc = new RevocationService({
    store, clock, log: silentLogger, maxTokenLifetime, refreshSeconds: 5,
    knownLabels: () => ({ roles: new Set(['schedd']), sites: new Set(['cloud-a']) }), knownIssuers: () => new Set([ISS]),
  })
  return svc
}

describe('a revocation made after a maximum lifetime was lowered', () => {
  it('keeps a token issued under the old maximum revoked until its own exp', async () => {
    let now = NOW
    const clock = { now: () => now }
    const store = new MemoryStore()
    // Issued while idtoken.max_lifetime was 7 days.
    await store.record({ type: 'token.issued', time: NOW, caller: { iss: ISS, sub: 'provisioner' }, role: 'schedd', tokenKind: 'idtoken', issuedSub: SUB, jti: 'a'.repeat(32), exp: NOW + 7 * DAY, decision: 'allow', site: 'cloud-a' })
    const claims = { sub: SUB, iat: NOW, jti: 'a'.repeat(32), ctb_role: 'schedd', ctb_site: 'cloud-a' }

    // Two days later the broker runs with a one-hour maximum.
    now = NOW + 2 * DAY
    const svc = tokens(store, clock, HOUR)
    await svc.refresh()
    expect((await svc.preview({ kind: 'sub', value: SUB })).liveTokens).toBe(1)
    const rev = await svc.revoke({ kind: 'sub', value: SUB, reason: 'compromised' }, ADMIN)
    expect(rev.until).toBe(NOW + 7 * DAY)

    // Past the one-hour window, days before the token expires: still revoked, still in the expression.
    now = NOW + 2 * DAY + 2 * HOUR
    await svc.refresh()
    expect(svc.isRevoked(claims)).toBe(true)
    expect((await svc.condorExpression()).expr).toContain(SUB)
    now = NOW + 6 * DAY
    await svc.refresh()
    expect(svc.isRevoked(claims)).toBe(true)

    // Once the token has expired the entry leaves the expression.
    now = NOW + 7 * DAY + 1
    expect((await svc.condorExpression()).expr).not.toContain(SUB)
  })

  it('holds a jti revocation given no exp, for a token the log no longer has, until the horizon', async () => {
    let now = NOW
    const clock = { now: () => now }
    const store = new MemoryStore()
    // A pilot's token renewed for 7 days (its record is token.renewed, under the new jti), and another
    // 7-day token whose record retention has pruned since.
    await store.record({ type: 'token.renewed', time: NOW, caller: { iss: ISS, sub: 'pilot' }, role: 'startd', tokenKind: 'idtoken', issuedSub: SUB, jti: 'd'.repeat(32), exp: NOW + 7 * DAY, decision: 'allow' })
    await store.record({ type: 'token.issued', time: NOW + 10, caller: { iss: ISS, sub: 'provisioner' }, role: 'schedd', tokenKind: 'idtoken', issuedSub: SUB, jti: 'e'.repeat(32), exp: NOW + 10 + 7 * DAY, decision: 'allow' })
    now = NOW + 2 * DAY
    expect((await store.prune(NOW + 20, now)).pruned).toBe(2)
    const svc = tokens(store, clock, HOUR)
    expect((await svc.revoke({ kind: 'jti', value: 'f'.repeat(32) }, ADMIN)).until).toBe(NOW + 10 + 7 * DAY)
  })

  it('finds a renewed token\'s exp for a jti revocation given none', async () => {
    const now = NOW + DAY
    const store = new MemoryStore()
    await store.record({ type: 'token.renewed', time: NOW, caller: { iss: ISS, sub: 'pilot' }, role: 'startd', tokenKind: 'idtoken', issuedSub: SUB, jti: 'd'.repeat(32), exp: NOW + 3 * DAY, decision: 'allow' })
    await store.record({ type: 'token.issued', time: NOW, caller: { iss: ISS, sub: 'provisioner' }, role: 'schedd', tokenKind: 'idtoken', issuedSub: SUB, jti: 'e'.repeat(32), exp: NOW + 7 * DAY, decision: 'allow' })
    expect((await tokens(store, { now: () => now }, HOUR).revoke({ kind: 'jti', value: 'd'.repeat(32) }, ADMIN)).until).toBe(NOW + 3 * DAY)
  })

  it('still lists the pilots and live tokens issued under the old maximum', async () => {
    const store = new MemoryStore()
    // A pilot's token renewed for 7 days while the maximum allowed it.
    await store.record({
      type: 'token.renewed', time: NOW, caller: { iss: ISS, sub: 'pilot' }, role: 'startd', tokenKind: 'idtoken', issuedSub: 'startd-n1@pool', jti: 'g'.repeat(32), exp: NOW + 7 * DAY, decision: 'allow', site: 'hpc-a',
      detail: { pilot: { site: 'hpc-a', job: '4242', node: 'n1', jobEnd: NOW + 7 * DAY, rule: 'pilots', enrolment: 'e1', redeemedAt: NOW - 60 } },
    })
    const now = NOW + 2 * DAY
    // The maximum is an hour now: looked for within it alone, the pilot is gone from view.
    expect(await listLivePilots(store, now, HOUR)).toEqual([])
    const window = await liveWindow(store, HOUR)()
    expect(window).toBe(7 * DAY)
    expect((await listLivePilots(store, now, window)).map((p) => `${p.site}:${p.job}:${p.node}`)).toEqual(['hpc-a:4242:n1'])
  })

  it('accepts the exp of such a token for a jti revocation, and no later one', async () => {
    let now = NOW
    const clock = { now: () => now }
    const store = new MemoryStore()
    await store.record({ type: 'token.issued', time: NOW, caller: { iss: ISS, sub: 'provisioner' }, role: 'schedd', tokenKind: 'idtoken', issuedSub: SUB, jti: 'b'.repeat(32), exp: NOW + 7 * DAY, decision: 'allow' })
    now = NOW + DAY
    const svc = tokens(store, clock, HOUR)
    expect((await svc.revoke({ kind: 'jti', value: 'b'.repeat(32), exp: NOW + 7 * DAY }, ADMIN)).until).toBe(NOW + 7 * DAY)
    await expect(svc.revoke({ kind: 'jti', value: 'c'.repeat(32), exp: NOW + 7 * DAY + 1 }, ADMIN)).rejects.toThrow(`exp must be at most ${NOW + 7 * DAY} (the latest exp of a token the broker has issued)`)
  })

  it('keeps a certificate issued under the old ca.max_lifetime on the CRL while it is valid', async () => {
    let now = NOW
    const clock = { now: () => now }
    const { store, certificates, issue } = await caWorld(clock)

    // Issued for 7 days while ca.max_lifetime was 7 days.
    const cert = await issue(await certificates(7 * DAY), 7 * DAY)
    expect(cert.notAfter).toBe(NOW + 7 * DAY)

    // Two days later ca.max_lifetime and the token maxima are one day; the site is revoked.
    now = NOW + 2 * DAY
    const svc = await certificates(DAY)
    await tokens(store, clock, DAY).revoke({ kind: 'site', value: 'cloud-a', reason: 'compromised' }, ADMIN)

    // Three days on, past both one-day windows: the certificate, valid two more days, is still held.
    now = NOW + 5 * DAY
    expect(opensslCrlEntries(await svc.crl())).toEqual(new Map([[cert.serial, 'Certificate Hold']]))
  })

  it('audit retention keeps the records of a revoked certificate the CRL still lists', async () => {
    let now = NOW
    const clock = { now: () => now }
    const { store, certificates, issue } = await caWorld(clock)
    const cert = await issue(await certificates(7 * DAY), 7 * DAY)
    await (await certificates(7 * DAY)).revoke(cert.serial, 'key compromise', ADMIN)

    // Four days later ca.max_lifetime is one day and the retention two (it covers the new maximum).
    now = NOW + 4 * DAY
    const svc = await certificates(DAY)
    const floor = certificateRetentionFloor(store, { maxLifetime: DAY, crlLifetime: HOUR }, clock.now)
    const pruned = await pruneExpired(store, clock, 2, floor)
    expect(pruned.heldBackTo).toBe(now - 7 * DAY - HOUR)
    expect(opensslCrlEntries(await svc.crl())).toEqual(new Map([[cert.serial, '']]))

    // Once the certificate has expired and a CRL lifetime passed, its records may go.
    now = NOW + 7 * DAY + HOUR + 2 * DAY + 1
    expect((await pruneExpired(store, clock, 2, floor)).pruned).toBeGreaterThanOrEqual(2)
    expect(opensslCrlEntries(await svc.crl())).toEqual(new Map())
  })
})

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
async function csrPem(): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  return (await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=ignored.example.org', keys, signingAlgorithm: ALG })).toString('pem')
}

/** A pool CA and its certificate service, over one memory store, with a policy granting 7-day host certificates. */
async function caWorld(clock: { now: () => number }) {
  const root = tempDir()
  writeFileSync(join(root, '10.yaml'), `version: 1
rules:
  - id: hosts
    match: { issuer: ${ISS}, client_id: [provisioner] }
    grants:
      - role: schedd
        identity: schedd-{host_short}@aps.{trust_domain}
        token_kinds: [idtoken]
        authz: [ADVERTISE_SCHEDD, ADVERTISE_MASTER, READ]
        hosts: ["ap*.example.org"]
        sites: [cloud-a]
        lifetime: { default: 1d, max: 7d }
        certificate: { max_lifetime: 7d }
`)
  const ctx: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'users.example.org', vars: {}, scitokenProfile: 'wlcg', maxLifetime: { idtoken: 7 * DAY, scitoken: 6 * HOUR } }
  await initPoolCa(join(root, 'ca'), { name: 'test CA', now: NOW })
  const store = new MemoryStore()
  const certificates = async (maxLifetime: number) => new CertificateService({
    ca: await PoolCa.load(join(root, 'ca')), audit: store, policy: { current: loadPolicies(root, ctx) }, clock, maxLifetime, crlLifetime: HOUR,
  })
  const operator: VerifiedSubject = { iss: ISS, sub: 'provisioner', client_id: 'provisioner', groups: [], scopes: [], exp: NOW + HOUR, claims: {} }
  const issue = async (svc: CertificateService, lifetime: number) =>
    svc.issue({ csr: await csrPem(), role: 'schedd', site: 'cloud-a', dns: [`ap${Math.floor(Math.random() * 1e6)}.example.org`], ip: [], lifetime }, operator, {})
  return { store, certificates, issue }
}
