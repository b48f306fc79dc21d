import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { renderPilotScript } from '../../src/clients/pilot/render.ts'
import { AT, claimsOf, startE2e, TE, type E2e } from '../support/broker_e2e.ts'
import { fakeMaster, nodeStubs, runPilot, until } from '../support/pilot_harness.ts'
import { tempDir } from '../support/tmp.ts'

// A requeued or preempted SLURM job runs its batch script again under the same SLURM_JOB_ID, with
// SLURM_RESTART_COUNT one higher (sbatch(1)). The rendered pilot, run under bash as sbatch would run it, against
// the real broker on loopback (shipped policies: site hpc-b, pilot.max_restarts left at its default of 2):
// the first run is preempted (SIGTERM) and leaves the staged credential for the next run; the next run redeems
// again and, ending by itself, deletes it. squeue is stubbed; nothing here needs SLURM.
const TRUST = 'pool.example.org'
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'

let e: E2e
beforeAll(async () => { e = await startE2e() })
afterAll(async () => { await e?.close() })

const children: (() => void)[] = []
afterEach(() => { for (const k of children.splice(0)) k() })

async function enrol(count: number): Promise<string> {
  const r = await e.post('/token', {
    grant_type: TE, subject_token: await e.robot('ctb-hpc-b-pilot-factory'), subject_token_type: AT,
    requested_token_type: ENROLMENT, role: 'pilot', site: 'hpc-b', pilot_count: String(count), lifetime: '3600',
  })
  expect(r.status, JSON.stringify(r.body)).toBe(200)
  return r.body.access_token as string
}

function job(id: string, maxRequeues: number) {
  const dir = tempDir('ctb-requeue-')
  const end = Math.floor(Date.now() / 1000) + 3600
  const stubs = nodeStubs(dir, { jobId: id, end })
  const staged = join(dir, 'enrolment.cred')
  const script = join(dir, 'pilot.sbatch')
  writeFileSync(script, renderPilotScript({
    site: 'hpc-b', partition: 'batch', walltime: '120', nodes: 1, cpus: 8, memMb: 16000, drainSeconds: 60, graceSeconds: 2,
    brokerUrl: e.broker.url, caFile: e.broker.devCaFile!, enrolmentFile: staged, logDir: dir, collector: 'cm.example.org',
    trustDomain: TRUST, allowedOwners: ['alice'], localBase: join(dir, 'node'), command: fakeMaster(dir), maxRequeues,
  }))
  const log = join(dir, 'master.log')
  /** One run of the batch script: run `restart` of the job (SLURM_RESTART_COUNT unset on the first). */
  const run = (restart?: number) => {
    rmSync(log, { force: true })
    rmSync(join(dir, 'stop'), { force: true })
    const p = runPilot(script, {
      ...stubs.env, SLURM_JOB_ID: id, SLURMD_NODENAME: 'wn01', FAKE_STAGED: staged,
      ...(restart !== undefined ? { SLURM_RESTART_COUNT: String(restart) } : {}),
    })
    children.push(() => {
      p.child.kill('SIGKILL')
      if (existsSync(log)) for (const m of readFileSync(log, 'utf8').matchAll(/^pid (\d+)$/gm)) { try { process.kill(-Number(m[1]), 'SIGKILL') } catch { /* gone */ } }
    })
    return p
  }
  const tokenLine = () => (existsSync(log) ? readFileSync(log, 'utf8') : '').split('\n').find((l) => l.startsWith('token '))?.split(' ')
  return { dir, staged, run, tokenLine, stop: () => writeFileSync(join(dir, 'stop'), '') }
}

/** The broker's redemption records of a job, oldest first. */
async function redemptions(id: string) {
  const page = await e.broker.services.store.query({ type: 'token.issued', limit: 1000 })
  return page.records.filter((r) => (r.event.detail as { slurmJob?: string } | undefined)?.slurmJob === id)
    .sort((a, b) => a.seq - b.seq).map((r) => r.event)
}

describe('a pilot whose SLURM job is preempted and requeued', () => {
  it('keeps the staged credential through the preemption, redeems again on the restart, and deletes it when the job ends', async () => {
    const j = job('5101', 2)
    writeFileSync(j.staged, `${await enrol(2)}\n`, { mode: 0o600 })

    const first = j.run()
    await until(() => j.tokenLine() !== undefined)
    // While the first run works the credential stays staged: the job may yet be requeued.
    expect(j.tokenLine()![6]).toBe('present')
    first.child.kill('SIGTERM')
    await first.exit
    expect(existsSync(j.staged)).toBe(true)

    const second = j.run(1)
    await until(() => j.tokenLine() !== undefined)
    const token = j.tokenLine()![11]!
    expect(claimsOf(token)).toMatchObject({ iss: TRUST, ctb_site: 'hpc-b', ctb_slurm_job: '5101' })
    j.stop()
    expect(await second.exit).toBe(0)
    // The job ended by itself: SLURM does not requeue a completed job, so nothing is left on shared storage.
    expect(existsSync(j.staged)).toBe(false)

    const recs = await redemptions('5101')
    expect(recs.map((r) => (r.detail as { pilot: { restart: number } }).pilot.restart)).toEqual([0, 1])
    expect(readdirSync(join(j.dir, 'node'))).toEqual([])
  })

  it('deletes the staged credential at start on its last allowed run (SLURM_RESTART_COUNT = --max-requeues)', async () => {
    const j = job('5102', 1)
    writeFileSync(j.staged, `${await enrol(2)}\n`, { mode: 0o600 })
    const p = j.run(1)
    await until(() => j.tokenLine() !== undefined)
    expect(j.tokenLine()![6]).toBe('gone')
    p.child.kill('SIGTERM')
    await p.exit
    expect(existsSync(j.staged)).toBe(false)
  })

  it('refuses a run beyond --max-requeues without asking the broker, and deletes the credential', async () => {
    const j = job('5103', 1)
    writeFileSync(j.staged, `${await enrol(2)}\n`, { mode: 0o600 })
    const p = j.run(2)
    expect(await p.exit).toBe(1)
    expect(p.stderr()).toContain('the job was restarted 2 times, more than the 1 this pilot allows (--max-requeues)')
    expect(existsSync(j.staged)).toBe(false)
    expect(await redemptions('5103')).toEqual([])
  })

  it('stops when the broker refuses a restart beyond the policy\'s bound, and deletes the credential', async () => {
    // The script would allow 5; the shipped hpc-b grant allows the default 2.
    const j = job('5104', 5)
    writeFileSync(j.staged, `${await enrol(4)}\n`, { mode: 0o600 })
    const p = j.run(3)
    expect(await p.exit).toBe(1)
    expect(p.stderr()).toContain('HTTP 400 (invalid_grant)')
    expect(existsSync(j.staged)).toBe(false)
    const denied = (await e.broker.services.store.query({ type: 'token.denied', limit: 1000 })).records.map((r) => r.event)
    expect(denied.some((d) => d.reason === 'invalid_grant: slurm_restart_count 3 is above the 2 restarts role pilot allows')).toBe(true)
  })
})
