import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, describe, expect, it } from 'vitest'
import type { AuditEvent, AuditLog } from '../../src/audit/audit_log.ts'
import { loadConfig } from '../../src/config.ts'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import { issueDepsFrom, issueToken, recordDenial, type AllowedDecision, type IssueDeps } from '../../src/issuance/issue.ts'
import { decodeCompact, verifyAsymmetric } from '../../src/issuance/jws.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'

const NOW = 1_800_000_000
const dir = mkdtempSync(join(tmpdir(), 'ctb-issue-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const config = loadConfig({ env: { CTB_DATA_DIR: dir, CTB_TRUST_DOMAIN: 'pool.example.org' } })
const { keys } = ensureAndLoadKeys(config, NOW)
const clock = fixedClock(NOW)

const caller: VerifiedSubject = {
  iss: 'https://iam.example.org/', sub: 'factory-1', client_id: 'glidein-factory', groups: ['/atlas/pilots'],
  scopes: ['openid'], exp: NOW + 600, claims: {},
}

const pilot: AllowedDecision = {
  allow: true, ruleId: 'pilots-1', role: 'pilot', tokenKind: 'idtoken', identity: 'pilot-site1-42@pilots.pool.example.org',
  scopes: ['ADVERTISE_STARTD', 'ADVERTISE_MASTER', 'READ'], audience: [], lifetime: 7200,
}

function deps(audit: AuditLog, generations: IssueDeps['generations'] = { generationOf: () => 1 }): IssueDeps {
  return { ...issueDepsFrom(config, { keys, audit, clock, generations }), issuer: 'https://broker.example.org', sciTokenProfile: 'wlcg' }
}

async function events(store: MemoryStore): Promise<AuditEvent[]> {
  const out: AuditEvent[] = []
  for await (const r of store.scan()) out.push(r.event)
  return out
}

describe('issueToken', () => {
  it('mints an IDTOKEN with revocation claims and returns it after its audit record, which holds only a hash', async () => {
    const store = new MemoryStore()
    const r = await issueToken({ ...pilot, site: 'SITE_A' }, { requestId: 'req-1', caller, clientAddress: '192.0.2.1' }, deps(store))
    const d = decodeCompact(r.token)!
    expect(d.header).toEqual({ alg: 'HS256', kid: config.idtoken.key })
    expect(d.payload).toMatchObject({
      iss: 'pool.example.org', sub: pilot.identity, iat: NOW, exp: NOW + 7200, ctb_role: 'pilot', ctb_gen: 1, ctb_site: 'SITE_A',
      scope: 'condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER condor:/READ',
    })
    expect(r).toMatchObject({ expiresIn: 7200, tokenKind: 'idtoken', jti: d.payload.jti })
    const [ev] = await events(store)
    expect(ev).toMatchObject({
      type: 'token.issued', time: NOW, requestId: 'req-1', decision: 'allow', role: 'pilot', tokenKind: 'idtoken',
      issuedSub: pilot.identity, jti: r.jti, exp: NOW + 7200, policyRule: 'pilots-1', site: 'SITE_A', clientAddress: '192.0.2.1',
      caller: { iss: caller.iss, sub: 'factory-1', client_id: 'glidein-factory', groups: ['/atlas/pilots'] },
      tokenSha256: createHash('sha256').update(r.token).digest('hex'), detail: { gen: 1 },
    })
    expect(JSON.stringify(ev)).not.toContain(r.token.split('.')[2])
  })

  it('uses the jti the policy chose and clamps the lifetime to the configured maximum', async () => {
    const store = new MemoryStore()
    const jti = '0123456789abcdef0123456789abcdef'
    const r = await issueToken({ ...pilot, jti, lifetime: 10 * 86400 } as AllowedDecision, { requestId: 'r', caller }, deps(store))
    expect(r.jti).toBe(jti)
    expect(r.expiresIn).toBe(config.idtoken.max_lifetime)
  })

  it('mints a WLCG token carrying the revocation claims, signed by the active key', async () => {
    const store = new MemoryStore()
    const r = await issueToken({ ...pilot, tokenKind: 'scitoken', identity: 'alice', scopes: ['compute.read'], audience: ['https://ce.example.org'], lifetime: 600 },
      { requestId: 'r', caller }, deps(store, { generationOf: () => 7 }))
    const d = decodeCompact(r.token)!
    expect(verifyAsymmetric(keys.scitoken.alg, d.signingInput, d.signature, keys.scitoken.publicKey)).toBe(true)
    expect(d.payload).toMatchObject({ iss: 'https://broker.example.org', sub: 'alice', aud: 'https://ce.example.org', 'wlcg.ver': '1.0', ctb_role: 'pilot', ctb_gen: 7 })
    expect(d.payload.ctb_site).toBeUndefined()
    expect((await events(store))[0]).toMatchObject({ tokenKind: 'scitoken', audience: ['https://ce.example.org'], scopes: ['compute.read'] })
  })

  it('does not return before the record commits', async () => {
    let commit!: () => void
    const audit: AuditLog = { record: () => new Promise<void>((r) => { commit = r }) }
    let done = false
    const p = issueToken(pilot, { requestId: 'r', caller }, deps(audit)).then((x) => { done = true; return x })
    await new Promise((r) => setTimeout(r, 20))
    expect(done).toBe(false)
    commit()
    expect((await p).token).toMatch(/^eyJ/)
  })

  it('returns no token when a real store cannot write (fail closed)', async () => {
    const file = join(dir, 'failing.db')
    const store = new SqliteStore({ file })
    const db = new DatabaseSync(file)
    db.exec("CREATE TRIGGER fail_insert BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END")
    db.close()
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => issueToken(pilot, { requestId: 'r', caller }, deps(store))))
    expect(results.map((r) => r.status)).toEqual(Array(10).fill('rejected'))
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/disk full/)
    expect(await store.verify()).toMatchObject({ ok: true, records: 0 })
    await store.close()
  })

  it('refuses a site that could not be matched safely in a ClassAd', async () => {
    await expect(issueToken({ ...pilot, site: 'a" || true || "' }, { requestId: 'r', caller }, deps(new MemoryStore()))).rejects.toThrow(/site/)
  })

  it('takes ctb_site from the decision only, never from anything the caller passed along', async () => {
    const store = new MemoryStore()
    // A context smuggling a site, as the request path once did: it must not reach the token or the record.
    const smuggled = { requestId: 'r', caller, site: 'hpc-b' } as Parameters<typeof issueToken>[1]
    const none = await issueToken(pilot, smuggled, deps(store))
    expect(decodeCompact(none.token)!.payload.ctb_site).toBeUndefined()
    const bound = await issueToken({ ...pilot, site: 'cloud-a' }, smuggled, deps(store))
    expect(decodeCompact(bound.token)!.payload.ctb_site).toBe('cloud-a')
    const [first, second] = await events(store)
    expect(first!.site).toBeUndefined()
    expect(second!.site).toBe('cloud-a')
  })

  it('carries the bumped generation after a role revocation, which revokes only the older tokens', async () => {
    const store = new MemoryStore()
    const revocations = new RevocationService({
      store, clock, log: silentLogger, maxTokenLifetime: 7 * 86400, refreshSeconds: 60, knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set() }),
    })
    await revocations.refresh()
    const old = await issueToken(pilot, { requestId: 'r1', caller }, deps(store, revocations))
    await revocations.revoke({ kind: 'role', value: 'pilot', reason: 'factory compromised' }, { principal: 'admin' })
    const fresh = await issueToken(pilot, { requestId: 'r2', caller }, deps(store, revocations))
    expect([old.claims.ctb_gen, fresh.claims.ctb_gen]).toEqual([1, 2])
    expect(revocations.isRevoked(old.claims)).toBe(true)
    expect(revocations.isRevoked(fresh.claims)).toBe(false)
    expect(await revocations.condorExpression()).toMatchObject({ expr: '(ctb_role =?= "pilot" && ctb_gen < 2)', clauses: 1 })
    expect(await store.verify()).toMatchObject({ ok: true, records: 3 })
  })
})

describe('recordDenial', () => {
  it('records who was refused and why', async () => {
    const store = new MemoryStore()
    await recordDenial({ allow: false, ruleId: 'r9', error: 'invalid_scope', reason: 'WRITE is not allowed for pilot' },
      { role: 'pilot', scopes: ['WRITE'], host: 'wn1.example.org' }, { requestId: 'q', caller }, { audit: store, clock })
    expect((await events(store))[0]).toMatchObject({
      type: 'token.denied', decision: 'deny', role: 'pilot', policyRule: 'r9', reason: 'invalid_scope: WRITE is not allowed for pilot',
      caller: { sub: 'factory-1' }, detail: { host: 'wn1.example.org' },
    })
  })
})
