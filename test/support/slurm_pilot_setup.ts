import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { renderPilotScript } from '../../src/clients/pilot/render.ts'
import type { E2e } from './broker_e2e.ts'
import type { TestSlurm } from './slurm.ts'

/** What the SLURM interop tests share: the pool, the site, and a pilot job as short as the pilot allows. */
export const TRUST = 'pool.example.org'
export const SITE = 'hpc-b'
// Walltime 2 min (the pilot's minimum) with a 90 s drain: renewal stops ~30 s into the job, and the
// early-warning signal comes on slurmctld's 30-second timer near the 90-s mark (seen 25-60 s into the job).
export const WALLTIME_S = 120
export const DRAIN_S = 90

/**
 * Copies a policy directory to `dest`, with the one `token_lifetime: 6h` of `file` cut to `seconds`, so that
 * a pilot renews within the test (every ~seconds/2). Throws when the file no longer says it exactly once: the
 * test would then run with other lifetimes than it thinks.
 */
export function policiesWithTokenLifetime(src: string, dest: string, file: string, seconds: number): string {
  cpSync(src, dest, { recursive: true })
  const path = join(dest, file)
  const text = readFileSync(path, 'utf8')
  if (text.split('token_lifetime: 6h').length !== 2) throw new Error(`${file} no longer says token_lifetime: 6h once; update this test`)
  writeFileSync(path, text.replace('token_lifetime: 6h', `token_lifetime: ${seconds}s`))
  return dest
}

/** Writes `script`: the sbatch pilot the tests submit, for the e2e broker, run under `dir` with `command`. */
export function writeTestPilot(script: string, slurm: TestSlurm, e: E2e, o: { dir: string; enrolmentFile: string; nodes: number; command: string }): string {
  writeFileSync(script, renderPilotScript({
    site: SITE, partition: slurm.partition, walltime: String(WALLTIME_S / 60), nodes: o.nodes, cpus: 1, memMb: 100,
    drainSeconds: DRAIN_S, graceSeconds: 20, brokerUrl: e.broker.url, caFile: e.broker.devCaFile!, enrolmentFile: o.enrolmentFile,
    logDir: o.dir, collector: 'cm.example.org', trustDomain: TRUST, allowedOwners: ['alice'], localBase: join(o.dir, 'node'), command: o.command,
  }))
  return script
}
