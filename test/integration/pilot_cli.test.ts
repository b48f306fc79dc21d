import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { runCli } from '../../src/cli/main.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'

async function cli(env: NodeJS.ProcessEnv, ...argv: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

const now = Math.floor(Date.now() / 1000)

/** A pilot token's record as the broker writes it (docs/pilots.md: detail.pilot). */
function pilotEvent(type: 'token.issued' | 'token.renewed', job: string, node: string, time: number, exp: number, jti: string, run?: { restart: number; redeemedAt: number }, enrolment = 'e1'): AuditEvent {
  return {
    type, time, role: 'pilot', tokenKind: 'idtoken', issuedSub: `pilot-hpc-b-${job}-${node}@pilots.pool.example.org`, jti, exp,
    decision: 'allow', site: 'hpc-b', policyRule: 'hpc-b-pilots',
    detail: { gen: 1, pilot: { site: 'hpc-b', job, node, jobEnd: now + 7200, rule: 'hpc-b-pilots', enrolment, redeemedAt: now - 600, ...run }, ...(type === 'token.renewed' ? { replaces: 'old' } : {}) },
  }
}

async function seeded(events: AuditEvent[]) {
  const dataDir = join(tempDir(), 'data')
  const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  const store = new SqliteStore({ file: join(dataDir, 'audit.db') })
  for (const e of events) await store.record(e)
  await store.close()
  return env
}

describe('condor-token-broker pilot list', () => {
  it('shows live pilots by site and job with their last renewal, and leaves out expired ones', async () => {
    const env = await seeded([
      pilotEvent('token.issued', '42', 'n1', now - 600, now + 1200, 'a1'),
      pilotEvent('token.renewed', '42', 'n1', now - 60, now + 1740, 'a2'),
      pilotEvent('token.issued', '42', 'n2', now - 600, now + 1200, 'b1'),
      pilotEvent('token.issued', '7', 'n9', now - 5000, now - 1000, 'c1'),
    ])
    const r = await cli(env, 'pilot', 'list', '--json')
    expect(r.code, r.err).toBe(0)
    const rows = r.out.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(rows.map((p) => `${p.site}:${p.job}:${p.node}`)).toEqual(['hpc-b:42:n1', 'hpc-b:42:n2'])
    expect(rows[0]).toMatchObject({ lastRenewedAt: now - 60, renewals: 1, exp: now + 1740 })
    expect(rows[1]).not.toHaveProperty('lastRenewedAt')
    const table = await cli(env, 'pilot', 'list')
    expect(table.out.split('\n')[0]).toBe('SITE\tJOB\tNODE\tENROLMENT\tREDEEMED\tLAST RENEWAL\tEXPIRES\tJOB END')
  })

  it('shows a requeued job\'s node as its newest run: that run\'s restart count, redemption and renewals', async () => {
    const env = await seeded([
      // Run 0 redeemed and renewed once; SLURM requeued the job and run 1 redeemed on the same node.
      pilotEvent('token.issued', '42', 'n1', now - 600, now + 100, 'r0a', { restart: 0, redeemedAt: now - 600 }),
      pilotEvent('token.renewed', '42', 'n1', now - 300, now + 400, 'r0b', { restart: 0, redeemedAt: now - 600 }),
      pilotEvent('token.issued', '42', 'n1', now - 30, now + 1800, 'r1a', { restart: 1, redeemedAt: now - 30 }),
    ])
    const r = await cli(env, 'pilot', 'list', '--json')
    expect(r.code, r.err).toBe(0)
    const rows = r.out.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ job: '42', node: 'n1', restart: 1, redeemedAt: now - 30, renewals: 0, exp: now + 1800 })
    expect(rows[0]).not.toHaveProperty('lastRenewedAt')
  })

  it('still shows a live run when a higher restart count redeemed on the same node and its token has expired', async () => {
    // The restart count is the pilot's word: anyone holding the staged credential can state restart 1 for this
    // job and node, take one token and let it lapse. Run 0 is still renewing, so it is live and must be listed.
    const env = await seeded([
      pilotEvent('token.issued', '42', 'n1', now - 900, now + 300, 'r0a', { restart: 0, redeemedAt: now - 900 }),
      pilotEvent('token.issued', '42', 'n1', now - 800, now - 100, 'r1a', { restart: 1, redeemedAt: now - 800 }),
      pilotEvent('token.renewed', '42', 'n1', now - 60, now + 1740, 'r0b', { restart: 0, redeemedAt: now - 900 }),
    ])
    const r = await cli(env, 'pilot', 'list', '--json')
    expect(r.code, r.err).toBe(0)
    const rows = r.out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ job: '42', node: 'n1', restart: 0, redeemedAt: now - 900, renewals: 1, lastRenewedAt: now - 60, exp: now + 1740 })
  })

  it('keeps apart two clusters\' pilots at one site whose SLURM clusters gave their jobs the same id, on nodes of the same name', async () => {
    // A job id is unique within one SLURM cluster only: the enrolment says which cluster's group a pilot is of.
    const env = await seeded([
      pilotEvent('token.issued', '42', 'n1', now - 600, now + 1200, 'a1', undefined, 'e1'),
      pilotEvent('token.issued', '42', 'n1', now - 500, now + 1300, 'b1', undefined, 'e2'),
    ])
    const r = await cli(env, 'pilot', 'list', '--json')
    expect(r.code, r.err).toBe(0)
    const rows = r.out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(rows.map((p) => `${p.enrolment}:${p.site}:${p.job}:${p.node}:${p.exp}`)).toEqual([`e1:hpc-b:42:n1:${now + 1200}`, `e2:hpc-b:42:n1:${now + 1300}`])
    // The table too names each row's enrolment, what `revoke --pilot-enrolment` takes: else the two rows read alike.
    const table = (await cli(env, 'pilot', 'list')).out.split('\n')
    expect(table[0]).toBe('SITE\tJOB\tNODE\tENROLMENT\tREDEEMED\tLAST RENEWAL\tEXPIRES\tJOB END')
    expect(table.slice(1).map((l) => l.split('\t').slice(0, 4).join(' '))).toEqual(['hpc-b 42 n1 e1', 'hpc-b 42 n1 e2'])
  })

  it('refuses an unknown subcommand with one line and status 2', async () => {
    const env = await seeded([])
    const r = await cli(env, 'pilot', 'show')
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/^[^\n]*unknown pilot command "show"[^\n]*$/)
  })
})

describe('condor-token-broker revoke --pilot-job', () => {
  it('revokes one job and puts a site-and-job clause into SEC_TOKEN_REVOCATION_EXPR', async () => {
    const env = await seeded([pilotEvent('token.issued', '42', 'n1', now - 60, now + 1200, 'a1')])
    const r = await cli(env, 'revoke', '--pilot-job', 'hpc-b:42', '--reason', 'runaway job')
    expect(r.code, r.err).toBe(0)
    expect(r.out).toMatch(/^revoked pilot-job hpc-b:42 /)
    const expr = await cli(env, 'revoke', 'condor')
    expect(expr.out).toContain('SEC_TOKEN_REVOCATION_EXPR = (ctb_site =?= "hpc-b" && ctb_slurm_job =?= "42")')
  })

  it('keeps audit verify green through a pilot-job revocation and its lift, and names a deleted pilot-job row', async () => {
    const env = await seeded([pilotEvent('token.issued', '42', 'n1', now - 60, now + 1200, 'a1')])
    expect((await cli(env, 'revoke', '--pilot-job', 'hpc-b:42')).code).toBe(0)
    expect((await cli(env, 'revoke', '--pilot-job', 'hpc-b:43')).code).toBe(0)
    expect((await cli(env, 'audit', 'verify')).out).toMatch(/\nrevocations OK: 2 rows match the audit chain\naudit anchors UNCHECKED: /)
    const lifted = await cli(env, 'revoke', 'lift', '1', '--reason', 'job was fine')
    expect(lifted.code, lifted.err).toBe(0)
    expect(lifted.out).toMatch(/^lifted revocation 1 \(pilot-job hpc-b:42\)/)
    expect((await cli(env, 'revoke', 'condor')).out).toMatch(/\nSEC_TOKEN_REVOCATION_EXPR = \(ctb_site =\?= "hpc-b" && ctb_slurm_job =\?= "43"\)$/)
    expect((await cli(env, 'audit', 'verify')).out).toMatch(/\nrevocations OK: 2 rows match the audit chain\naudit anchors UNCHECKED: /)

    // The lift is part of what the chain vouches for: undoing it in the table alone is caught, as is a deletion.
    const db = new DatabaseSync(join(env.CTB_DATA_DIR, 'audit.db'))
    db.exec('UPDATE revocations SET lifted_at = NULL, lifted_by = NULL WHERE id = 1; DELETE FROM revocations WHERE id = 2')
    db.close()
    const v = await cli(env, 'audit', 'verify')
    expect(v.code).toBe(1)
    // Seq 2 opens the MAC era: the first record written with the audit MAC key (docs/audit.md).
    expect(v.out).toContain('revocation 1 (pilot-job "hpc-b:42") differs from its record at seq 3: liftedAt null')
    expect(v.out).toContain('revocation 2 (pilot-job "hpc-b:43"), recorded at seq 4, is missing from the revocations table (deleted)')
  })

  it('refuses a value that is not SITE:JOBID', async () => {
    const env = await seeded([])
    const r = await cli(env, 'revoke', '--pilot-job', 'hpc-b-42')
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/SITE:JOBID/)
    expect((await cli(env, 'revoke', 'list')).out).toMatch(/^no active revocations /)
  })
})

describe('condor-token-broker revoke --pilot-enrolment', () => {
  const E = '0123456789abcdef0123456789abcdef'
  it('revokes one enrolment, puts a ctb_enrolment clause into SEC_TOKEN_REVOCATION_EXPR, and keeps audit verify green through its lift', async () => {
    const env = await seeded([pilotEvent('token.issued', '42', 'n1', now - 60, now + 1200, 'a1')])
    const r = await cli(env, 'revoke', '--pilot-enrolment', E, '--reason', 'teardown')
    expect(r.code, r.err).toBe(0)
    expect(r.out).toMatch(new RegExp(`^revoked pilot-enrolment ${E} `))
    expect((await cli(env, 'revoke', 'condor')).out).toMatch(new RegExp(`\nSEC_TOKEN_REVOCATION_EXPR = ctb_enrolment =\\?= "${E}"$`))
    expect((await cli(env, 'audit', 'verify')).out).toMatch(/\nrevocations OK: 1 rows match the audit chain\n/)
    expect((await cli(env, 'revoke', 'lift', '1')).out).toMatch(new RegExp(`^lifted revocation 1 \\(pilot-enrolment ${E}\\)`))
    expect((await cli(env, 'revoke', 'condor')).out).toMatch(/\nSEC_TOKEN_REVOCATION_EXPR = false$/)
    const db = new DatabaseSync(join(env.CTB_DATA_DIR, 'audit.db'))
    db.exec('DELETE FROM revocations WHERE id = 1')
    db.close()
    const v = await cli(env, 'audit', 'verify')
    expect(v.code).toBe(1)
    expect(v.out).toMatch(new RegExp(`revocation 1 \\(pilot-enrolment "${E}"\\), recorded at seq \\d+, is missing from the revocations table \\(deleted\\)`))
  })

  it('refuses a value that is not a jti with one line', async () => {
    const env = await seeded([])
    const r = await cli(env, 'revoke', '--pilot-enrolment', 'hpc-b:42')
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^[^\n]*pilot-enrolment must be an enrolment credential's jti[^\n]*$/)
    expect((await cli(env, 'revoke', 'list')).out).toMatch(/^no active revocations /)
  })
})
