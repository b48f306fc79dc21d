import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { renderPilotScript } from '../../src/clients/pilot/render.ts'
import { fakeIdToken, idTokenReply, startFakeBroker, type SeenRequest } from '../support/pilot_harness.ts'
import { startSlurm, type TestSlurm } from '../support/slurm.ts'
import { tempDir } from '../support/tmp.ts'

// The rendered sbatch pilot on a real (throw-away) SLURM cluster: two slurmd on this host, jobs submitted with
// sbatch. COMMAND is a recorder standing in for condor_master (Debian does not package HTCondor): it logs every
// token version it finds in the pilot's token directory and the SIGTERM that drains it.
const TRUST = 'pool.example.org'
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
const IDTOKEN = 'urn:htcondor:token-type:idtoken'
// Walltime 2 min with a 90 s drain: renewal stops ~30 s into the job, and the early-warning signal comes when
// slurmctld's 30-second timer first sees fewer than 90 s left, so 30-60 s into the job.
const WALLTIME_S = 120
const DRAIN_S = 90
const TOKEN_LIFE_S = 10

function recorder(dir: string): string {
  const file = join(dir, 'recorder')
  writeFileSync(file, `#!/bin/bash
# Records each token version in the pilot's token directory, and the SIGTERM that drains it. Bounded (300 s).
out="$(dirname "$0")/rec-$SLURM_JOB_ID-$SLURMD_NODENAME.log"
tokens=$(dirname "$CONDOR_CONFIG")/tokens.d
echo "start $(date +%s)" >> "$out"
trap 'echo "term $(date +%s)" >> "$out"; exit 0' TERM
last=
for (( i = 0; i < 3000; i++ )); do
  cur=$(cat "$tokens/pilot" 2>/dev/null)
  if [[ -n $cur && $cur != "$last" ]]; then echo "token $(date +%s) $(stat -c %a "$tokens/pilot") $cur" >> "$out"; last=$cur; fi
  sleep 0.1 & wait $!
done
echo "gave-up $(date +%s)" >> "$out"
exit 99
`)
  chmodSync(file, 0o755)
  return file
}

interface Recorded { start: number; term?: number; tokens: { at: number; mode: string; token: string }[] }

function readRecord(file: string): Recorded {
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(' '))
  return {
    start: Number(lines.find((l) => l[0] === 'start')?.[1]),
    ...(lines.some((l) => l[0] === 'term') ? { term: Number(lines.find((l) => l[0] === 'term')![1]) } : {}),
    tokens: lines.filter((l) => l[0] === 'token').map((l) => ({ at: Number(l[1]), mode: l[2]!, token: l[3]! })),
  }
}

/** scontrol prints local ISO times without a zone; the pilot reads squeue's the same way (date -d). */
const epoch = (local: string) => Math.floor(new Date(local).getTime() / 1000)

describe('sbatch pilot on a real SLURM cluster (fake broker)', () => {
  let slurm: TestSlurm
  beforeAll(async () => { slurm = await startSlurm({ nodes: 2 }) })
  afterAll(async () => { await slurm?.stop() })

  it('redeems once per job with the job id, node and end, renews, and drains COMMAND on the early-warning signal', async () => {
    const dir = tempDir('ctb-slurm-pilot-')
    const seen: SeenRequest[] = []
    let n = 0
    const broker = await startFakeBroker(dir, (req) => {
      seen.push(req)
      const ok = req.params.subject_token_type === ENROLMENT || req.params.subject_token_type === IDTOKEN
      return ok ? idTokenReply(fakeIdToken(TRUST, n++), TOKEN_LIFE_S) : { status: 400, body: { error: 'invalid_request' } }
    })
    try {
      const staged = join(dir, 'enrolment')
      writeFileSync(staged, 'enrolment-credential-1\n')
      const script = join(dir, 'pilot.sbatch')
      writeFileSync(script, renderPilotScript({
        site: 'hpc-b', partition: slurm.partition, walltime: String(WALLTIME_S / 60), nodes: 1, cpus: 1, memMb: 100,
        drainSeconds: DRAIN_S, graceSeconds: 5, brokerUrl: broker.url, caFile: broker.caFile, enrolmentFile: staged,
        logDir: dir, collector: 'cm.example.org', trustDomain: TRUST, allowedOwners: ['alice'], localBase: join(dir, 'node'),
        command: recorder(dir),
      }))
      // One job per node, each with its own staged copy of the credential (the script is one node per job).
      const staged2 = join(dir, 'enrolment2')
      copyFileSync(staged, staged2)
      const script2 = join(dir, 'pilot2.sbatch')
      writeFileSync(script2, readFileSync(script, 'utf8').replace(`'${staged}'`, `'${staged2}'`))
      const submitted = Date.now()
      const jobs = [await slurm.sbatch(script, ['-w', slurm.nodes[0]!]), await slurm.sbatch(script2, ['-w', slurm.nodes[1]!])]
      const running = await Promise.all(jobs.map((j) => slurm.waitJob(j, ['RUNNING', 'COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'], 30_000)))
      const done = await Promise.all(jobs.map((j) => slurm.waitJob(j, ['COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'], (WALLTIME_S + 60) * 1000)))
      const took = (Date.now() - submitted) / 1000
      const pilotLog = (j: string) => { const f = join(dir, `pilot-${j}.out`); return existsSync(f) ? readFileSync(f, 'utf8') : '(no pilot log)' }

      for (const [i, j] of jobs.entries()) {
        const node = slurm.nodes[i]!
        // Drained, not killed at the walltime: the pilot passed the recorder's exit status 0 through.
        expect(done[i]!.JobState, pilotLog(j)).toBe('COMPLETED')
        expect(done[i]!.ExitCode).toBe('0:0')
        expect(done[i]!.NodeList).toBe(node)
        const end = epoch(running[i]!.EndTime!)
        const redeem = seen.filter((r) => r.params.subject_token_type === ENROLMENT && r.params.slurm_job_id === j)
        expect(redeem.map((r) => r.params)).toEqual([{
          grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'enrolment-credential-1',
          subject_token_type: ENROLMENT, slurm_job_id: j, node, job_end: String(end),
        }])
        const rec = readRecord(join(dir, `rec-${j}-${node}.log`))
        // The first token was in place before COMMAND started; later versions are renewals (real clock).
        expect(rec.tokens.length, pilotLog(j)).toBeGreaterThanOrEqual(2)
        for (const t of rec.tokens) expect(t.mode).toBe('600')
        expect(new Set(rec.tokens.map((t) => t.token)).size).toBe(rec.tokens.length)
        // The early-warning signal (USR1, about DRAIN_S before the end) drained COMMAND before the walltime.
        expect(rec.term, pilotLog(j)).toBeDefined()
        expect(rec.term!).toBeLessThan(end)
        expect(pilotLog(j)).toContain('received SIGUSR1')
        expect(epoch(done[i]!.EndTime!)).toBeLessThan(end)
      }
      // Two nodes, two distinct tokens; the staged credentials are gone.
      const first = jobs.map((j, i) => readRecord(join(dir, `rec-${j}-${slurm.nodes[i]}.log`)).tokens[0]!.token)
      expect(first[0]).not.toBe(first[1])
      expect(existsSync(staged)).toBe(false)
      expect(existsSync(staged2)).toBe(false)
      // Renewals present IDTOKENs only; the credential went in once per job.
      expect(seen.filter((r) => r.params.subject_token_type === ENROLMENT)).toHaveLength(2)
      console.log(`slurm pilot (fake broker): ${took.toFixed(1)} s from sbatch to both jobs done`)
    } finally {
      await broker.close()
    }
  }, (WALLTIME_S + 120) * 1000)
})
