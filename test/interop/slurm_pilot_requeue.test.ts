import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KeyStore } from '../../src/keys/key_store.ts'
import { AT, claimsOf, startE2e, TE, type E2e } from '../support/broker_e2e.ts'
import { epoch, recorder, until, verifiesWithPoolKey } from '../support/pilot_recorder.ts'
import { startSlurm, type TestSlurm } from '../support/slurm.ts'
import { SITE, TRUST, WALLTIME_S, writeTestPilot } from '../support/slurm_pilot_setup.ts'
import { tempDir } from '../support/tmp.ts'

// A pilot job requeued with `scontrol requeue` on a real (throw-away) one-node SLURM cluster: SLURM stops the first
// run (SIGTERM, SIGKILL after KillWait), runs the batch script again under the same job id with
// SLURM_RESTART_COUNT=1, and that run's pilot redeems the same staged credential again (docs/pilots.md,
// "Requeued and preempted jobs"). slurmctld holds a requeued job back (Reason=BeginTime) for AuthInfo's
// cred_expire, 120 s by default, and the backfill pass that starts it comes on a 30-second timer, so this file
// costs 2.5 to 3.5 minutes. Shortcuts were tried and are not reliable on slurm-wlm 22.05: starting it at once
// (scontrol update StartTime=now) gets it killed ("Job credential revoked"), and with cred_expire=10 the second
// run was either never launched or got SIGTERM at launch.
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'

describe('a pilot job requeued on a real SLURM cluster', () => {
  let slurm: TestSlurm
  let e: E2e
  let dir: string
  beforeAll(async () => {
    slurm = await startSlurm({ nodes: 1 })
    const policies = tempDir('ctb-slurm-policies-')
    cpSync(join(import.meta.dirname, '../../policies'), policies, { recursive: true })
    e = await startE2e({ CTB_POLICY_DIR: policies })
    dir = mkdtempSync(join(tmpdir(), 'ctb-slurm-requeue-'))
  })
  afterAll(async () => {
    await slurm?.stop()
    await e?.close()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('redeems again on the requeued run, keeps the staged credential between runs and deletes it when the job drains', async () => {
    const r = await e.post('/token', {
      grant_type: TE, subject_token: await e.robot('ctb-hpc-b-pilot-factory'), subject_token_type: AT,
      requested_token_type: ENROLMENT, role: 'pilot', site: SITE, pilot_count: '4', lifetime: '900',
    })
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    const staged = join(dir, 'enrolment')
    writeFileSync(staged, `${r.body.access_token as string}\n`, { mode: 0o600 })
    const script = writeTestPilot(join(dir, 'pilot.sbatch'), slurm, e, { dir, enrolmentFile: staged, nodes: 1, command: recorder(dir) })
    const job = await slurm.sbatch(script)
    const node = slurm.nodes[0]!
    const recFile = join(dir, `rec-${job}-${node}.log`)
    const runs = () => (existsSync(recFile) ? readFileSync(recFile, 'utf8').split('\n') : []).reduce<string[][]>((acc, l) => {
      if (l.startsWith('start ')) acc.push([])
      else if (l.startsWith('token ') && acc.length > 0) acc[acc.length - 1]!.push(l.split(' ')[3]!)
      return acc
    }, [])
    const pilotLog = () => { const f = join(dir, `pilot-${job}.out`); return existsSync(f) ? readFileSync(f, 'utf8') : '(no pilot log)' }

    await slurm.waitJob(job, ['RUNNING'], 30_000)
    await until(() => (runs()[0]?.length ?? 0) >= 1, 30_000, `job ${job}'s first run placed its token\n${pilotLog()}`)
    await slurm.run('scontrol', ['requeue', job])
    await slurm.waitJob(job, ['PENDING'], 30_000)
    // The first run was stopped by SIGTERM (SIGKILL after KillWait): the credential is still staged for this run.
    expect(existsSync(staged), pilotLog()).toBe(true)
    const second = await slurm.waitJob(job, ['RUNNING'], 200_000)
    expect(second.Restarts).toBe('1')
    await until(() => (runs()[1]?.length ?? 0) >= 1, 30_000, `job ${job}'s second run placed its token\n${pilotLog()}\n${slurm.logs()}`)

    const [a, b] = [runs()[0]![0]!, runs()[1]![0]!]
    const keys = new KeyStore(join(e.env.CTB_DATA_DIR!, 'keys'))
    const kid = e.broker.services.config.idtoken.key
    for (const t of [a, b]) {
      expect(verifiesWithPoolKey(t, keys, kid)).toBe(true)
      expect(claimsOf(t)).toMatchObject({ iss: TRUST, sub: `pilot+${SITE}+${claimsOf(r.body.access_token as string).jti as string}+${job}-${node}@pilots.${TRUST}`, ctb_site: SITE, ctb_slurm_job: job })
    }
    expect(claimsOf(b).jti).not.toBe(claimsOf(a).jti)
    // The second run's token never outlives the second run's end.
    expect(claimsOf(b).exp as number).toBeLessThanOrEqual(epoch(second.EndTime!))
    const redeemed = (await e.broker.services.store.query({ type: 'token.issued', limit: 1000 })).records
      .map((x) => x.event.detail as { slurmJob?: string; pilot?: { restart: number } } | undefined)
      .filter((d) => d?.slurmJob === job).map((d) => d!.pilot!.restart)
    expect(redeemed.sort()).toEqual([0, 1])

    // The second run drains before the walltime (SIGUSR1): SLURM never requeues that, so the credential goes.
    const done = await slurm.waitJob(job, ['COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'], (WALLTIME_S + 60) * 1000)
    expect(done.JobState, pilotLog()).toBe('COMPLETED')
    expect(pilotLog()).toContain('received SIGUSR1')
    expect(existsSync(staged)).toBe(false)
  }, (WALLTIME_S + 360) * 1000)
})
