import { afterAll, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { pilotDetail, PilotRegistry, type PilotRecord } from '../../src/issuance/pilot_registry.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const now = 1_900_000_000
const pilot: PilotRecord = {
  identity: 'pilot-hpc-a-77-n1@pilots.pool.example.org', site: 'hpc-a', job: '77', node: 'n1', jobEnd: now + 7200,
  role: 'pilot', rule: 'hpc-a-pilots', enrolment: 'cred-1', redeemedAt: now, restart: 0,
}

/** The record a pilot token's issue leaves, as redemption and renewal write it. */
const recordOf = (type: 'token.issued' | 'token.renewed', jti: string, replaces?: string): AuditEvent => ({
  type, time: now, requestId: `r-${jti}`, caller: { iss: 'https://iam.example.org/', sub: 'factory' }, role: pilot.role,
  tokenKind: 'idtoken', issuedSub: pilot.identity, jti, exp: now + 1200, policyRule: pilot.rule, decision: 'allow', site: pilot.site,
  detail: { gen: 0, slurmJob: pilot.job, ...(replaces ? { replaces } : {}), pilot: pilotDetail(pilot) },
})

describe('PilotRegistry', () => {
  const store = new MemoryStore()
  afterAll(() => store.close())

  it('keeps one entry per node along a chain of renewals, and still finds a replaced token in the log', async () => {
    const registry = new PilotRegistry(store)
    await store.record(recordOf('token.issued', 'j0'))
    registry.add('j0', pilot, now + 1200, now)
    for (let i = 1; i <= 50; i++) {
      await store.record(recordOf('token.renewed', `j${i}`, `j${i - 1}`))
      registry.add(`j${i}`, pilot, now + 1200, now, `j${i - 1}`)
      expect(registry.size).toBe(1)
    }
    // Every token of the chain is unexpired: the replaced ones are found through their records.
    expect(await registry.lookup('j50')).toEqual(pilot)
    expect(await registry.lookup('j0')).toEqual(pilot)
    expect(await registry.lookup('j25')).toEqual(pilot)
    expect(await registry.lookup('never-issued')).toBeUndefined()
  })

  it('keeps each node of a job apart', () => {
    const registry = new PilotRegistry(store)
    registry.add('a0', pilot, now + 1200, now)
    registry.add('b0', { ...pilot, node: 'n2', identity: 'pilot-hpc-a-77-n2@pilots.pool.example.org' }, now + 1200, now)
    registry.add('a1', pilot, now + 1200, now, 'a0')
    registry.add('b1', pilot, now + 1200, now, 'b0')
    expect(registry.size).toBe(2)
  })

  describe('mintedToken', () => {
    const key = {}
    const minted = (n: number, k: object = key) => ({ sha256: `${n}`.padStart(64, 'a'), claims: { jti: `m${n}`, sub: pilot.identity }, key: k })

    it('vouches for the newest token of a chain, by its SHA-256 and signing key only', () => {
      const registry = new PilotRegistry(store)
      registry.add('m0', pilot, now + 1200, now, undefined, minted(0))
      registry.add('m1', pilot, now + 1200, now, 'm0', minted(1))
      expect(registry.mintedToken(minted(1).sha256, key)).toEqual({ claims: minted(1).claims, pilot })
      // The replaced token is no longer vouched for here: it takes the signature check and the log.
      expect(registry.mintedToken(minted(0).sha256, key)).toBeUndefined()
      // Nor is a token of a key no longer in force, nor one never minted.
      expect(registry.mintedToken(minted(1).sha256, {})).toBeUndefined()
      expect(registry.mintedToken('f'.repeat(64), key)).toBeUndefined()
    })

    it('forgets a token once it has expired', () => {
      const registry = new PilotRegistry(store)
      registry.add('e0', pilot, now + 10, now, undefined, minted(7))
      // The next addition after expiry sweeps it out.
      registry.add('e1', { ...pilot, node: 'n2' }, now + 7200, now + 3600, undefined, minted(8))
      expect(registry.mintedToken(minted(7).sha256, key)).toBeUndefined()
      expect(registry.mintedToken(minted(8).sha256, key)?.claims).toEqual(minted(8).claims)
    })

    it('vouches for nothing added without its minted form (a token found in the log)', () => {
      const registry = new PilotRegistry(store)
      registry.add('p0', pilot, now + 1200, now)
      expect(registry.size).toBe(1)
      expect(registry.mintedToken(minted(0).sha256, key)).toBeUndefined()
    })
  })
})
