import { describe, expect, it } from 'vitest'
import type { AuditEvent, AuditRecord } from '../../src/audit/audit_log.ts'
import { revocationDifferences, revocationOfEvent } from '../../src/revocation/revocation_consistency.ts'

const T = 1_800_000_000
const rec = (seq: number, event: AuditEvent): AuditRecord => ({ seq, event, prevHash: '', hash: '' })

describe('revocation consistency', () => {
  it('reads a record written before the full row was stored from the fields the service set alongside', () => {
    // The shape older brokers wrote: detail.revocation without revokedAt, reason or revokedBy.
    const legacy: AuditEvent = {
      type: 'token.revoked', time: T, caller: { sub: 'cli:root' }, site: 'SITE_A', reason: 'compromised',
      detail: { revocation: { id: 4, kind: 'site', value: 'SITE_A', until: T + 60 } },
    }
    expect(revocationOfEvent(legacy)).toEqual({ id: 4, kind: 'site', value: 'SITE_A', revokedAt: T, until: T + 60, reason: 'compromised', revokedBy: 'cli:root' })
  })

  it('takes a current record at its word, not the surrounding event', () => {
    const e: AuditEvent = {
      type: 'token.revoked', time: T + 9, caller: { sub: 'someone-else' },
      detail: { revocation: { id: 1, kind: 'role', value: 'pilot', revokedAt: T, until: T + 60, gen: 2 } },
    }
    expect(revocationOfEvent(e)).toEqual({ id: 1, kind: 'role', value: 'pilot', revokedAt: T, until: T + 60, gen: 2 })
    expect(revocationOfEvent({ ...e, type: 'token.issued' })).toBeUndefined()
  })

  it('names one id recorded twice with different content', () => {
    const r = (seq: number, until: number) => rec(seq, { type: 'token.revoked', time: T, detail: { revocation: { id: 1, kind: 'jti', value: 'j', revokedAt: T, until } } })
    expect(revocationDifferences({ records: [r(1, T + 1), r(2, T + 2)], rows: [{ id: 1, kind: 'jti', value: 'j', revokedAt: T, until: T + 1 }], generations: new Map() }))
      .toEqual(['revocation 1 is recorded differently at seq 1 and seq 2'])
  })
})
