import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KeyStore } from '../../src/keys/key_store.ts'
import { AT, claimsOf, startE2e, TE, type E2e } from '../support/broker_e2e.ts'
import { epoch, readRecord, recorder, until, verifiesWithPoolKey } from '../support/pilot_recorder.ts'
import { startSlurm, type TestSlurm } from '../support/slurm.ts'
import { policiesWithTokenLifetime, SITE, TRUST, WALLTIME_S, writeTestPilot } from '../support/slurm_pilot_setup.ts'
import { tempDir } from '../support/tmp.ts'

// The demonstration on a real (throw-away) SLURM cluster: the broker and the development IAM on
// loopback, two slurmd on this host, rendered sbatch pilots submitted with sbatch. COMMAND is a recorder standing
// in for condor_master (Debian does not package HTCondor): it logs every token version it finds in the pilot's
// token directory, and the SIGTERM that drains it.
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
const SCOPE = 'condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER'
// The shipped hpc-b policy with 10 s pilot tokens, so the pilot renews every ~5 s.
const TOKEN_LIFE_S = 10

// The two tests run concurrently, and tempDir removes every test's dirs when any test ends: these are ours.
const jobDirs: string[] = []
function jobDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  jobDirs.push(d)
  return d
}

describe('sbatch pilots on a real SLURM cluster against the broker and the development IAM', () => {
  let slurm: TestSlurm
  let e: E2e
  beforeAll(async () => {
    slurm = await startSlurm({ nodes: 2 })
    const policies = policiesWithTokenLifetime(join(import.meta.dirname, '../../policies'), tempDir('ctb-slurm-policies-'), '20-hpc-slurm.yaml', TOKEN_LIFE_S)
    e = await startE2e({ CTB_POLICY_DIR: policies })
  })
  afterAll(async () => {
    await slurm?.stop()
    await e?.close()
    for (const d of jobDirs) rmSync(d, { recursive: true, force: true })
  })

  // Concurrent: the one-node jobs take 1 CPU on each node and the two-node job 1 more on each, so all three run
  // at once and the file costs one walltime's drain, not two.
  it.concurrent('two one-node pilots: verified tokens renewed until drained, credential spent, replay refused, revocation stops renewal', async () => {
    const dir = jobDir('ctb-slurm-pilot-')
    const factory = await e.robot('ctb-hpc-b-pilot-factory')
    // One credential per job, as a pilot factory would obtain them.
    const credentials: string[] = []
    for (let i = 0; i < 2; i++) {
      const r = await e.post('/token', { grant_type: TE, subject_token: factory, subject_token_type: AT, requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1', lifetime: '600' })
      expect(r.status, JSON.stringify(r.body)).toBe(200)
      expect(r.body.issued_token_type).toBe(ENROLMENT)
      credentials.push(r.body.access_token as string)
    }
    const command = recorder(dir)
    const staged = credentials.map((c, i) => { const f = join(dir, `enrolment-${i}`); writeFileSync(f, `${c}\n`, { mode: 0o600 }); return f })
    const scripts = staged.map((f, i) => writeTestPilot(join(dir, `pilot-${i}.sbatch`), slurm, e, { dir, enrolmentFile: f, nodes: 1, command }))
    const submitted = Date.now()
    // -w puts one job on each node; the pilot script is one node per job.
    const jobs = [await slurm.sbatch(scripts[0]!, ['-w', slurm.nodes[0]!]), await slurm.sbatch(scripts[1]!, ['-w', slurm.nodes[1]!])]
    const [a, b] = jobs as [string, string]
    const rec = (i: number) => readRecord(join(dir, `rec-${jobs[i]}-${slurm.nodes[i]}.log`))
    const pilotLog = (i: number) => { const f = join(dir, `pilot-${jobs[i]}.out`); return existsSync(f) ? readFileSync(f, 'utf8') : '(no pilot log)' }
    const running = await Promise.all(jobs.map((j) => slurm.waitJob(j, ['RUNNING', 'COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'], 30_000)))
    const ends = running.map((r) => epoch(r.EndTime!))

    // Job b: once its token has been renewed, revoke the job; the next renewal must be refused.
    await until(() => rec(1).tokens.length >= 2, 30_000, `job ${b} renewed\n${pilotLog(1)}`)
    const revoked = await e.postJson('/v1/revocations', { 'pilot-job': `${SITE}:${b}`, reason: 'interop test' }, { authorization: `Bearer ${await e.user('alice')}` })
    expect(revoked.status, JSON.stringify(revoked.body)).toBeLessThan(300)
    const seenAtRevocation = rec(1).tokens.length
    await until(() => pilotLog(1).includes('renewal stopped'), 20_000, `job ${b} renewal stopped\n${pilotLog(1)}`)
    expect(pilotLog(1)).toContain('renewal stopped: the broker refused it')
    // A renewal already answered when the revocation was committed may still land; none after it.
    expect(rec(1).tokens.length).toBeLessThanOrEqual(seenAtRevocation + 1)

    // Replay: the credential job a redeemed is spent.
    await until(() => rec(0).tokens.length >= 1, 30_000, `job ${a} token\n${pilotLog(0)}`)
    const replay = await e.post('/token', { grant_type: TE, subject_token: credentials[0]!, subject_token_type: ENROLMENT, slurm_job_id: a, node: slurm.nodes[0]!, job_end: String(ends[0]) })
    expect(replay.status).toBe(400)
    expect(replay.body.error).toBe('invalid_grant')

    const done = await Promise.all(jobs.map((j) => slurm.waitJob(j, ['COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'], (WALLTIME_S + 60) * 1000)))
    const took = (Date.now() - submitted) / 1000
    const keys = new KeyStore(join(e.env.CTB_DATA_DIR!, 'keys'))
    const kid = e.broker.services.config.idtoken.key
    const subs: string[] = []
    for (const [i, j] of jobs.entries()) {
      const node = slurm.nodes[i]!
      const r = rec(i)
      // Drained by the early-warning signal, not killed at the walltime: the recorder's status 0 passed through.
      expect(done[i]!.JobState, pilotLog(i)).toBe('COMPLETED')
      expect(done[i]!.ExitCode).toBe('0:0')
      expect(done[i]!.NodeList).toBe(node)
      expect(r.term, pilotLog(i)).toBeDefined()
      expect(r.term!).toBeLessThan(ends[i]!)
      expect(pilotLog(i)).toContain('received SIGUSR1')
      expect(epoch(done[i]!.EndTime!)).toBeLessThan(ends[i]!)
      // Every version COMMAND saw: 0600, HMAC-valid under the pool key, this job's and node's identity, the
      // pilot scope and claims, and an exp within the token lifetime and never after the job's end.
      expect(r.tokens.length, pilotLog(i)).toBeGreaterThanOrEqual(2)
      const jtis = new Set<string>()
      for (const t of r.tokens) {
        expect(t.mode).toBe('600')
        expect(verifiesWithPoolKey(t.token, keys, kid)).toBe(true)
        const c = claimsOf(t.token)
        expect(c).toMatchObject({ iss: TRUST, sub: `pilot+${SITE}+${claimsOf(credentials[i]!).jti as string}+${j}-${node}@pilots.${TRUST}`, scope: SCOPE, ctb_role: 'pilot', ctb_site: SITE, ctb_enrolment: claimsOf(credentials[i]!).jti, ctb_slurm_job: j })
        expect(c.exp as number).toBeLessThanOrEqual(ends[i]!)
        expect((c.exp as number) - (c.iat as number)).toBeLessThanOrEqual(TOKEN_LIFE_S)
        jtis.add(c.jti as string)
      }
      expect(jtis.size).toBe(r.tokens.length)
      subs.push(claimsOf(r.tokens[0]!.token).sub as string)
      // The staged credential is gone.
      expect(existsSync(staged[i]!)).toBe(false)
    }
    // Job a was never revoked: no renewal of it was refused.
    expect(pilotLog(0)).not.toContain('renewal stopped')
    // Two nodes, two distinct identities.
    expect(new Set(subs).size).toBe(2)
    console.log(`slurm pilots: ${took.toFixed(1)} s from sbatch to both jobs done; tokens seen ${rec(0).tokens.length} (a), ${rec(1).tokens.length} (b, revoked)`)
  }, (WALLTIME_S + 120) * 1000)

  it.concurrent('a two-node pilot job: one verified token per node, both renewed and drained, the credential on no node', async ({ expect }) => {
    const dir = jobDir('ctb-slurm-pilot2-')
    const factory = await e.robot('ctb-hpc-b-pilot-factory')
    const r = await e.post('/token', { grant_type: TE, subject_token: factory, subject_token_type: AT, requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '2', lifetime: '600' })
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    const credential = r.body.access_token as string
    const staged = join(dir, 'enrolment')
    writeFileSync(staged, `${credential}\n`, { mode: 0o600 })
    const script = writeTestPilot(join(dir, 'pilot.sbatch'), slurm, e, { dir, enrolmentFile: staged, nodes: 2, command: recorder(dir) })
    const job = await slurm.sbatch(script)
    const rec = (node: string) => readRecord(join(dir, `rec-${job}-${node}.log`))
    // On failure: what each node's recorder logged (tokens left out) and the step's processes still alive.
    const recorderLogs = () => readdirSync(dir).filter((n) => n.startsWith('rec-')).map((n) => `${n}: ${readFileSync(join(dir, n), 'utf8').split('\n').filter((l) => !l.startsWith('token')).join(' | ')}`).join('\n')
      + '\n' + (spawnSync('ps', ['-eo', 'pid,ppid,pgid,sid,stat,wchan:16,args'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((l) => l.includes(dir)).join('\n')
    const pilotLog = () => { const f = join(dir, `pilot-${job}.out`); return existsSync(f) ? readFileSync(f, 'utf8') : '(no pilot log)' }
    const end = epoch((await slurm.waitJob(job, ['RUNNING', 'COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'], 30_000)).EndTime!)
    await until(() => slurm.nodes.every((n) => rec(n).tokens.length >= 2), 40_000, `job ${job} renewed on both nodes\n${pilotLog()}`)
    // Both nodes redeemed the one credential (pilot_count 2): it is now spent.
    const replay = await e.post('/token', { grant_type: TE, subject_token: credential, subject_token_type: ENROLMENT, slurm_job_id: job, node: 'ctbn3', job_end: String(end) })
    expect(replay.status).toBe(400)
    expect(replay.body.error).toBe('invalid_grant')

    const done = await slurm.waitJob(job, ['COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'], (WALLTIME_S + 60) * 1000)
    expect(done.JobState, `${pilotLog()}\n${recorderLogs()}`).toBe('COMPLETED')
    expect(done.ExitCode).toBe('0:0')
    expect(done.NodeList).toBe('ctbn[1-2]')
    expect(epoch(done.EndTime!)).toBeLessThan(end)
    expect(pilotLog()).toContain("received SIGUSR1: passing SIGTERM to every node's task")
    // Through scancel --signal, which signals the step and leaves it running, not srun's own abort of the step.
    expect(pilotLog()).not.toContain('stopping the step through srun')
    expect(pilotLog()).not.toContain('forcing job termination')
    expect(pilotLog()).toMatch(/the node tasks ended; exit status 0 /)
    const keys = new KeyStore(join(e.env.CTB_DATA_DIR!, 'keys'))
    const kid = e.broker.services.config.idtoken.key
    const subs: string[] = []
    for (const node of slurm.nodes) {
      const r = rec(node)
      // The batch shell's SIGUSR1 reached this node's task, which drained its command before the walltime.
      expect(r.term, pilotLog()).toBeDefined()
      expect(r.term!).toBeLessThan(end)
      const jtis = new Set<string>()
      for (const t of r.tokens) {
        expect(t.mode).toBe('600')
        expect(verifiesWithPoolKey(t.token, keys, kid)).toBe(true)
        const c = claimsOf(t.token)
        expect(c).toMatchObject({ iss: TRUST, sub: `pilot+${SITE}+${claimsOf(credential).jti as string}+${job}-${node}@pilots.${TRUST}`, scope: SCOPE, ctb_role: 'pilot', ctb_site: SITE, ctb_enrolment: claimsOf(credential).jti, ctb_slurm_job: job })
        expect(c.exp as number).toBeLessThanOrEqual(end)
        jtis.add(c.jti as string)
      }
      expect(jtis.size).toBe(r.tokens.length)
      subs.push(claimsOf(r.tokens[0]!.token).sub as string)
    }
    expect(new Set(subs).size).toBe(2)
    // The credential: the staged file is gone, no node-local pilot directory is left, and no file the job or
    // SLURM wrote (node dirs, logs, slurmd spools) holds it.
    expect(existsSync(staged)).toBe(false)
    expect(readdirSync(join(dir, 'node'))).toEqual([])
    const files = [dir, join(slurm.dir, 'spool')].flatMap((d) => readdirSync(d, { recursive: true, encoding: 'utf8' }).map((f) => join(d, f)))
    for (const f of files) {
      let text: string
      // The one-node jobs may still be running and their spool files come and go.
      try { if (!statSync(f).isFile()) continue; text = readFileSync(f, 'latin1') } catch { continue }
      expect(text.includes(credential), f).toBe(false)
    }
    console.log(`slurm two-node pilot: tokens seen ${slurm.nodes.map((n) => rec(n).tokens.length).join(' + ')}`)
  }, (WALLTIME_S + 120) * 1000)
})
