// The console's Pilots page heading counts jobs. A SLURM job id is unique within one SLURM cluster only, so two
// clusters' pilot groups at one site may both run a job 42: those are two jobs, told apart by their enrolment.
import { expect, it } from 'vitest'
import { pilotsPage } from '../../src/console/pages/pilots_page.ts'
import type { LivePilot } from '../../src/issuance/pilot_list.ts'

const NOW = 1_800_000_000
const pilot = (enrolment: string): LivePilot => ({
  site: 'hpc', job: '42', node: 'n1', identity: `pilot+hpc+${enrolment}+42-n1@pilots.pool.example.org`, role: 'pilot', enrolment,
  restart: 0, redeemedAt: NOW - 60, renewals: 0, exp: NOW + 600, jobEnd: NOW + 3600,
})

it('counts job 42 of two enrolments at one site as two jobs', () => {
  const out = pilotsPage({ viewer: { principal: 'admin', csrf: 'c' }, now: NOW, pilots: [pilot('0123456789abcdef0123456789abcdef'), pilot('fedcba9876543210fedcba9876543210')] })
  expect(out).toContain('Live pilots: 2 nodes in 2 jobs')
})
