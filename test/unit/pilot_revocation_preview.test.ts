// What `revoke --dry-run` (and the admin API's dry_run) says a pilot revocation would take: every live pilot token
// of the job or enrolment. A pilot renews its token about every half lifetime, each renewal a `token.renewed`
// record, so a pilot running for longer than one token lifetime holds a token that no `token.issued` record names.
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const NOW = 1_800_000_000
const E1 = '0123456789abcdef0123456789abcdef'
const ISS = 'https://iam.example.org/'
const SUB = `pilot+hpc+${E1}+42-n1@pilots.pool.example.org`
const pilot = { site: 'hpc', job: '42', node: 'n1', jobEnd: NOW + 86_400, rule: 'r1', enrolment: E1, redeemedAt: NOW - 3000, restart: 0 }

describe('a pilot revocation\'s dry run', () => {
  it('counts a pilot\'s renewed token, the one it holds once its first token has expired', async () => {
    const store = new MemoryStore()
    const common = { caller: { iss: ISS, sub: 'provisioner' }, role: 'pilot', tokenKind: 'idtoken', issuedSub: SUB, decision: 'allow', site: 'hpc' } as const
    // Redeemed 3000 s ago with a 1200 s token (expired 1800 s ago), renewed 1800 s ago until 1800 s from now.
    await store.record({ ...common, type: 'token.issued', time: NOW - 3000, jti: 'a'.repeat(32), exp: NOW - 1800, detail: { gen: 1, pilot } })
    await store.record({ ...common, type: 'token.renewed', time: NOW - 1800, jti: 'b'.repeat(32), exp: NOW + 1800, detail: { gen: 1, pilot } })
    const svc = new RevocationService({
      store, clock: { now: () => NOW }, log: silentLogger, maxTokenLifetime: 3600, refreshSeconds: 60,
      knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc']) }), knownIssuers: () => new Set([ISS]),
    })
    await svc.refresh()
    // One live token: the renewed one (hand-counted from the two records above).
    expect((await svc.preview({ kind: 'pilot-enrolment', value: E1 })).liveTokens).toBe(1)
    expect((await svc.preview({ kind: 'pilot-job', value: 'hpc:42' })).liveTokens).toBe(1)
    expect((await svc.preview({ kind: 'sub', value: SUB })).liveTokens).toBe(1)
  })

  it('does not count a pilot token another entry already revokes by its job', async () => {
    const store = new MemoryStore()
    const common = { caller: { iss: ISS, sub: 'provisioner' }, role: 'pilot', tokenKind: 'idtoken', issuedSub: SUB, decision: 'allow', site: 'hpc' } as const
    await store.record({ ...common, type: 'token.issued', time: NOW - 600, jti: 'a'.repeat(32), exp: NOW + 600, detail: { gen: 1, slurmJob: '42', pilot } })
    const svc = new RevocationService({
      store, clock: { now: () => NOW }, log: silentLogger, maxTokenLifetime: 3600, refreshSeconds: 60,
      knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc']) }), knownIssuers: () => new Set([ISS]),
    })
    await svc.refresh()
    expect((await svc.preview({ kind: 'pilot-enrolment', value: E1 })).liveTokens).toBe(1)
    await svc.revoke({ kind: 'pilot-job', value: 'hpc:42' }, { principal: 'admin' })
    // The one pilot token is revoked already (as a token of job 42 at hpc): nothing live left to take.
    expect((await svc.preview({ kind: 'pilot-enrolment', value: E1 })).liveTokens).toBe(0)
  })

  it('counts the enrolment credential itself, whose redemptions the entry stops, and not once it is revoked', async () => {
    const store = new MemoryStore()
    // A group whose pilots have not started yet: only its credential is live.
    await store.record({
      type: 'token.issued', time: NOW - 60, caller: { iss: ISS, sub: 'provisioner' }, role: 'pilot', tokenKind: 'pilot_enrolment', jti: E1, exp: NOW + 3000,
      decision: 'allow', site: 'hpc', policyRule: 'r1', detail: { gen: 1, pilotCount: 4 },
    })
    const svc = new RevocationService({
      store, clock: { now: () => NOW }, log: silentLogger, maxTokenLifetime: 3600, refreshSeconds: 60,
      knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc']) }), knownIssuers: () => new Set([ISS]),
    })
    await svc.refresh()
    expect((await svc.preview({ kind: 'pilot-enrolment', value: E1 })).liveTokens).toBe(1)
    await svc.revoke({ kind: 'pilot-enrolment', value: E1 }, { principal: 'admin' })
    // Revoked as a pilot group: its redemptions are refused, so revoking it by jti would take nothing more.
    expect((await svc.preview({ kind: 'jti', value: E1 })).liveTokens).toBe(0)
  })
})
